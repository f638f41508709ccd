"""Scoring on the test period: the metrics of one model, and the two trivial baselines every model must beat.

Per reading: precision, recall, F1 with the false-alarm rate (FAR, normal readings flagged) and the missed-alarm rate
(MAR, anomalous readings not flagged) beside it, since on data with many anomalous readings flagging everything
scores a high F1; ROC-AUC and PR-AUC of the scores. Per true episode, when the readings' sensor and time are known:
how many episodes were found (any reading flagged) and the median delay to the first flag (`training.episodes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve, roc_auc_score

from sensorops import features
from sensorops.training.data import (
    LABEL_COLUMN,
    TIME_COLUMN,
    TYPE_COLUMN,
    Inputs,
    features_and_labels,
    require_both_classes,
)
from sensorops.training.episodes import flag_detection, pointwise

RATES = ("precision", "recall", "f1", "false_alarm_rate", "missed_alarm_rate")


def anomaly_scores(model: BaseEstimator, X: pd.DataFrame) -> np.ndarray:
    """A score that grows with the likelihood of an anomaly: P(anomaly) or the detector's anomaly score."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.decision_function(X), dtype=float)


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model (or baseline) on the test period."""

    metrics: dict[str, float]
    confusion: np.ndarray
    """[[TN, FP], [FN, TP]]"""
    recall_by_type: dict[str, float]
    precision_curve: np.ndarray = field(repr=False)
    recall_curve: np.ndarray = field(repr=False)
    detection: pd.DataFrame | None = field(default=None, repr=False)
    """Per true episode: sensor_id, anomaly_type, start, end, readings, detected, delay_s (when readings are known)."""

    def flat(self) -> dict[str, float]:
        """Everything as one flat dict of numbers, the form MLflow logs."""
        (tn, fp), (fn, tp) = self.confusion
        counts = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        by_type = {f"recall_{t}": r for t, r in self.recall_by_type.items()}
        return {**self.metrics, **{k: float(v) for k, v in counts.items()}, **by_type}


def _episode_metrics(detection: pd.DataFrame) -> dict[str, float]:
    found = detection["detected"]
    delays = {"median_delay_s": float(detection.loc[found, "delay_s"].median())} if found.any() else {}
    n = len(detection)
    return {"episodes": float(n), "event_recall": float(found.mean()) if n else 0.0, **delays}


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    scores: np.ndarray,
    anomaly_type: pd.Series,
    readings: pd.DataFrame | None = None,
) -> Evaluation:
    """Precision, recall, F1, FAR, MAR, ROC-AUC, PR-AUC, the confusion matrix and recall per anomaly type; with
    `readings` (sensor_id and event_time, row for row), the episodes found and the median detection delay (present
    only when some episode was found)."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    require_both_classes(pd.Series(y_true), what="the test period")
    confusion = confusion_matrix(y_true, y_pred, labels=[0, 1])
    types = pd.Series(np.asarray(anomaly_type)).astype(str)
    flags = pd.DataFrame({"is_anomaly": y_true.astype(bool), "decision": y_pred.astype(bool), "anomaly_type": types})
    rates = pointwise(flags)
    metrics = {
        **{k: rates[k] for k in RATES[:3]},
        "roc_auc": roc_auc_score(y_true, scores),
        "pr_auc": average_precision_score(y_true, scores),
        **{k: rates[k] for k in RATES[3:]},
    }
    detection = None
    if readings is not None:
        where = {"sensor_id": readings["sensor_id"].to_numpy(), "event_time": readings[TIME_COLUMN].to_numpy()}
        detection = flag_detection(flags.assign(**where))
        metrics.update(_episode_metrics(detection))
    recall_by_type = {
        kind: float(y_pred[(types == kind).to_numpy() & (y_true == 1)].mean())
        for kind in sorted(types[y_true == 1].unique())
    }
    precision_curve, recall_curve, _ = precision_recall_curve(y_true, scores)
    return Evaluation(
        metrics={k: float(v) for k, v in metrics.items()},
        confusion=confusion,
        recall_by_type=recall_by_type,
        precision_curve=precision_curve,
        recall_curve=recall_curve,
        detection=detection,
    )


def _readings(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The sensor and time of each row, when the frame has them (event-level metrics need them)."""
    return frame[["sensor_id", TIME_COLUMN]] if {"sensor_id", TIME_COLUMN} <= set(frame.columns) else None


def evaluate_model(model: BaseEstimator, test: pd.DataFrame) -> Evaluation:
    """Score a fitted model on a test frame (on the inputs it was fitted on: `Inputs.of`)."""
    X, y = features_and_labels(test, Inputs.of(model))
    return evaluate(y, model.predict(X), anomaly_scores(model, X), test[TYPE_COLUMN], _readings(test))


ZSCORE_COLUMNS = ("temp_zscore", "humidity_zscore", "pressure_zscore")
MAX_ZSCORE = (features.ROLLING_WINDOW - 1) ** 0.5
"""The largest |z-score| a reading can have when the window it is compared with contains it (population standard
deviation): sqrt(n - 1), exactly 3 for n = 10. The rule of thumb "beyond 3 standard deviations" never fires here."""
ZSCORE_THRESHOLD = 2.5


def baselines(
    test: pd.DataFrame, *, z_threshold: float = ZSCORE_THRESHOLD, zscore_columns: Sequence[str] = ZSCORE_COLUMNS
) -> dict[str, Evaluation]:
    """Two rules any model must beat: flag every reading (always a baseline: on data with many anomalous readings it
    scores a high F1, at a false-alarm rate of 1); flag a reading whose largest |z-score| (of `zscore_columns`, a
    profile's `<channel>_zscore`) exceeds 2.5 (not 3: see `MAX_ZSCORE`)."""
    y = test[LABEL_COLUMN].astype(bool).to_numpy().astype(int)
    types, readings = test[TYPE_COLUMN], _readings(test)
    largest_z = test[list(zscore_columns)].astype("float64").abs().max(axis=1).fillna(0.0).to_numpy()
    return {
        "flag_everything": evaluate(y, np.ones_like(y), np.ones(len(y)), types, readings),
        "zscore_threshold": evaluate(y, (largest_z > z_threshold).astype(int), largest_z, types, readings),
    }
