"""The run report: one self-contained HTML page in S3, named by its s3:// URI in the MLflow run (overwritten on a
retry)."""

from __future__ import annotations

import html
import io
import logging
from typing import TYPE_CHECKING, Any

from sensorops.pipeline import store
from sensorops.pipeline.context import DAG_ID, RunContext
from sensorops.pipeline.outputs import BatchManifest, ReportOutput, Trained, Validation

if TYPE_CHECKING:
    import pandas as pd

    from sensorops.registry import Promotion

log = logging.getLogger(__name__)

REPORT = "report.html"
COMPARISON_COLUMNS = ("kind", "precision", "recall", "f1", "roc_auc", "pr_auc", "false_alarm_rate", "cv_f1")
STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN (a baseline has no CV score): empty
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plots(batch: BatchManifest, validation: Validation, comparison: pd.DataFrame) -> str:
    """Where the batch went, its anomaly types and the models compared, with plotly.js inlined once."""
    import plotly.express as px
    import plotly.graph_objects as go

    from sensorops.training import plots

    counts = validation.counts
    flow = go.Figure(
        go.Bar(
            x=["produced", "archived", "dead letters", "feature rows"],
            y=[batch.acknowledged, counts.archived, counts.dead_letters, counts.feature_rows],
        )
    )
    flow.update_layout(title="Where the batch went", yaxis_title="events")
    types = px.bar(
        x=list(batch.anomaly_types),
        y=list(batch.anomaly_types.values()),
        log_y=True,
        labels={"x": "anomaly type", "y": "events"},
        title="Events by anomaly type",
    )
    figures = [flow, types, plots.comparison(comparison)]
    return "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figures))


def render_report(
    ctx: RunContext,
    batch: BatchManifest,
    validation: Validation,
    trained: Trained,
    promotion: Promotion,
    comparison: pd.DataFrame,
) -> str:
    """The run report as one self-contained HTML page (plotly.js inlined once)."""
    verdict = "promoted to champion" if promotion.promoted else "not promoted"
    summary = [
        {
            "run": ctx.run_id,
            "dag": ctx.dag_id,
            "events": batch.events,
            "broken on purpose": batch.bad,
            "event time": f"{batch.start} .. {batch.end}",
            "best model": trained.best_model,
            "test f1": trained.test_metrics["f1"],
            "model version": promotion.version,
            "verdict": verdict,
        }
    ]
    checks = [
        {"check": c.name, "ok": "yes" if c.ok else "NO", "value": c.value, "limit": c.limit, "detail": c.detail}
        for c in validation.checks
    ]
    shown = [c for c in COMPARISON_COLUMNS if c in comparison.columns]
    models = comparison[shown].reset_index().to_dict("records")
    mlflow_link = f"<a href='{html.escape(trained.mlflow_url)}'>MLflow run {trained.mlflow_run_id}</a>"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{DAG_ID} {html.escape(ctx.run_id)}</title>"
        f"<style>{STYLE}</style></head><body><h1>Pipeline run {html.escape(ctx.run_id)}</h1>{_table(summary)}"
        f"<p>{mlflow_link}. {html.escape(promotion.reason)}.</p>"
        f"<h2>Data checks</h2>{_table(checks)}<h2>Models on the test period</h2>{_table(models)}"
        f"<h2>Plots</h2>{_plots(batch, validation, comparison)}</body></html>"
    )


def write_report(
    ctx: RunContext,
    generate_batch: BatchManifest,
    validate_data: Validation,
    train_and_evaluate: Trained,
    promote_model: Promotion,
) -> ReportOutput:
    """Write the HTML run report to S3 and link it from the MLflow run (tags and the run's description)."""
    import mlflow
    import pandas as pd

    from sensorops import registry

    trained = train_and_evaluate
    client = registry.client()
    table = mlflow.artifacts.load_text(f"runs:/{trained.mlflow_run_id}/comparison.csv")
    comparison = pd.read_csv(io.StringIO(table), index_col=0)
    page = render_report(ctx, generate_batch, validate_data, trained, promote_model, comparison).encode()
    key = ctx.key(REPORT)
    uri = store.put(key, page, "text/html; charset=utf-8")
    client.set_tag(trained.mlflow_run_id, "sensorops.report_uri", uri)
    client.set_tag(trained.mlflow_run_id, "mlflow.note.content", report_note(ctx, uri))
    log.info("report written to %s", uri)
    return ReportOutput(report_uri=uri, bytes=len(page))


def report_note(ctx: RunContext, uri: str) -> str:
    """The MLflow run's description: where the report is and how to open it (no link that carries a key)."""
    return (
        f"Run of the Airflow DAG `{ctx.dag_id}` ({ctx.run_id}). Report: `{uri}`; open a copy with "
        f"`python -c \"from sensorops import pipeline; print(pipeline.download('{uri}'))\"` (writes it under "
        "`_build/reports/`)."
    )
