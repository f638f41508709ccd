"""Plotly figures of a training session: comparison, confusion matrix, precision-recall curves, importance."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from sensorops.training.evaluation import Evaluation


def confusion_matrix(evaluation: Evaluation, *, title: str = "") -> go.Figure:
    """Counts of the test period: rows are the truth, columns the prediction."""
    labels = ["normal", "anomaly"]
    fig = px.imshow(
        evaluation.confusion,
        x=labels,
        y=labels,
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "predicted", "y": "actual", "color": "readings"},
    )
    fig.update_layout(title=f"Confusion matrix {title}".strip(), width=420, height=380)
    return fig


def precision_recall(evaluations: Mapping[str, Evaluation]) -> go.Figure:
    """Precision against recall as the threshold moves, one curve per model (PR-AUC in the legend)."""
    fig = go.Figure()
    for name, e in evaluations.items():
        label = f"{name} (PR-AUC {e.metrics['pr_auc']:.2f})"
        fig.add_scatter(x=e.recall_curve, y=e.precision_curve, mode="lines", name=label)
    fig.update_layout(
        title="Precision-recall on the test period",
        xaxis_title="recall",
        yaxis_title="precision",
        xaxis_range=[0, 1.02],
        yaxis_range=[0, 1.02],
        height=420,
    )
    return fig


def feature_importance(importance: pd.Series, *, top: int = 15, title: str = "") -> go.Figure:
    """The `top` most important inputs (after preprocessing: one-hot columns and missing-value indicators)."""
    data = importance.head(top).iloc[::-1]
    fig = px.bar(x=data.to_numpy(), y=data.index, orientation="h", labels={"x": "importance", "y": ""})
    fig.update_layout(title=f"Feature importance {title}".strip(), height=max(300, 24 * len(data) + 100))
    return fig


def comparison(table: pd.DataFrame, metrics: tuple[str, ...] = ("precision", "recall", "f1", "pr_auc")) -> go.Figure:
    """Test metrics of every model and baseline side by side (the table of `training.comparison`)."""
    long = table[list(metrics)].reset_index().melt(id_vars="model", var_name="metric", value_name="value")
    fig = px.bar(long, x="model", y="value", color="metric", barmode="group", range_y=[0, 1.05])
    fig.update_layout(title="Models against the baselines, on the test period", height=420)
    return fig


def recall_by_type(evaluations: Mapping[str, Evaluation]) -> go.Figure:
    """Which kinds of anomaly each model catches."""
    rows = [
        {"model": n, "anomaly_type": t, "recall": r}
        for n, e in evaluations.items()
        for t, r in e.recall_by_type.items()
    ]
    fig = px.bar(pd.DataFrame(rows), x="anomaly_type", y="recall", color="model", barmode="group", range_y=[0, 1.05])
    fig.update_layout(title="Recall per anomaly type", height=400)
    return fig
