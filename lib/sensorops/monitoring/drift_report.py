"""The drift report: a self-contained HTML page (table and overlaid distributions), its logging to MLflow, and its
scores pushed to Prometheus' Pushgateway (the `DriftDetected` alert, the dashboard).

The page inlines plotly.js (`include_plotlyjs=True`, about 4.7 MB) so that it opens without the internet, from an
MLflow artifact as from a file; the distributions are pre-binned histograms, not the raw rows.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path

import mlflow
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from sensorops.monitoring.drift import DriftReport

EXPERIMENT = "sensor-drift"
ARTIFACT = "drift/report.html"
TOP_COLUMNS = 6
PUSH_JOB = "sensorops_drift"
"""The Pushgateway group of the drift check: each check replaces the previous one's values."""


def distributions(report: DriftReport, top: int = TOP_COLUMNS) -> go.Figure:
    """Reference and window densities of the `top` most drifted columns (by PSI), overlaid."""
    columns = [c for c in report.scores.index if c in report.histograms][:top]
    rows = max(1, (len(columns) + 1) // 2)
    titles = [f"{c} (PSI {report.scores.at[c, 'psi']:.2f})" for c in columns]
    fig = make_subplots(rows=rows, cols=2, subplot_titles=titles or ["no column scored"])
    for i, column in enumerate(columns):
        h = report.histograms[column]
        mids = (h.edges[:-1] + h.edges[1:]) / 2
        for name, density, colour in (("reference", h.reference, "#1f77b4"), ("window", h.current, "#d62728")):
            fig.add_bar(
                x=mids, y=density, name=name, marker_color=colour, opacity=0.55, showlegend=i == 0,
                row=i // 2 + 1, col=i % 2 + 1,
            )  # fmt: skip
    fig.update_layout(barmode="overlay", bargap=0, height=280 * rows, title="Most drifted columns")
    return fig


def to_html(report: DriftReport, *, title: str = "Drift report", context: Mapping[str, str] | None = None) -> str:
    """The whole report as one HTML page: the decision, context, quality and score tables, distributions."""
    summary = report.summary()
    verdict = "DRIFT DETECTED" if summary["drift_detected"] else "no drift detected"
    facts = {
        "decision": f"{verdict}: PSI > {report.threshold:g} in any of {', '.join(report.decision_columns) or '-'}",
        **{k: f"{v:.3f}" if isinstance(v, float) else str(v) for k, v in summary.items()},
        **(context or {}),
    }
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    scores = report.scores.style.format(precision=3).apply(
        lambda row: ["background:#fde0dd" if row["drifted"] else "" for _ in row], axis=1
    )
    figure = distributions(report).to_html(full_html=False, include_plotlyjs=True)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "th,td{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{rows}</table>"
        f"<h2>Data quality of the window</h2>{report.quality.to_html(float_format='{:.4f}'.format)}"
        f"<h2>Scores per column</h2>{scores.to_html()}<h2>Distributions</h2>{figure}</body></html>"
    )


def write_html(report: DriftReport, path: str | Path, **kwargs: object) -> Path:
    """Write `to_html` to `path`; return it."""
    out = Path(path)
    out.write_text(to_html(report, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    return out


def log_to_mlflow(
    report: DriftReport,
    *,
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str:
    """One MLflow run on the current tracking URI: scores as metrics, the HTML page and the score table as
    artifacts, `params` (window, reference) as parameters. Returns the run id."""
    mlflow.set_experiment(experiment)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d-%H%M%S-%f")
    with mlflow.start_run(run_name=run_name or f"drift-{stamp}", tags=dict(tags or {})) as run:
        if params:
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        mlflow.log_metrics(report.metrics())
        mlflow.set_tag("sensorops.drift_detected", str(report.drift_detected).lower())
        mlflow.log_text(to_html(report, context=params), ARTIFACT)
        mlflow.log_text(report.scores.to_csv(), "drift/scores.csv")
        mlflow.log_text(report.quality.to_csv(), "drift/quality.csv")
    return run.info.run_id


def push(report: DriftReport, gateway: str) -> None:
    """The decision, the largest PSI and each column's PSI to the Pushgateway at `gateway` (`host:port`)."""
    metrics = CollectorRegistry()
    summary = report.summary()
    Gauge("sensorops_drift_detected", "1 if the last check found drift", registry=metrics).set(
        summary["drift_detected"]
    )
    Gauge("sensorops_drift_max_psi", "largest PSI of the last check", registry=metrics).set(report.max_psi)
    per_column = Gauge("sensorops_drift_psi", "PSI of each column in the last check", ["column"], registry=metrics)
    for column, value in report.scores["psi"].dropna().items():
        per_column.labels(column=str(column)).set(float(value))
    Gauge(
        "sensorops_drift_checked_timestamp_seconds", "when the last check ran", registry=metrics
    ).set_to_current_time()
    push_to_gateway(gateway, job=PUSH_JOB, registry=metrics, timeout=10)
