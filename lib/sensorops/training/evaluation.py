"""Scoring on the test period: the metrics of one model, and the two trivial baselines every model must beat."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from sensorops import features
from sensorops.training.data import LABEL_COLUMN, TYPE_COLUMN, features_and_labels, require_both_classes


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

    def flat(self) -> dict[str, float]:
        """Everything as one flat dict of numbers, the form MLflow logs."""
        (tn, fp), (fn, tp) = self.confusion
        counts = {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        by_type = {f"recall_{t}": r for t, r in self.recall_by_type.items()}
        return {**self.metrics, **{k: float(v) for k, v in counts.items()}, **by_type}


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, anomaly_type: pd.Series) -> Evaluation:
    """Precision, recall, F1, ROC-AUC, PR-AUC, false-alarm rate, confusion matrix and recall per anomaly type."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    require_both_classes(pd.Series(y_true), what="the test period")
    confusion = confusion_matrix(y_true, y_pred, labels=[0, 1])
    (tn, fp), _ = confusion
    metrics = {
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "f1": f1_score(y_true, y_pred, zero_division=0),
        "roc_auc": roc_auc_score(y_true, scores),
        "pr_auc": average_precision_score(y_true, scores),
        "false_alarm_rate": fp / max(fp + tn, 1),
    }
    types = pd.Series(np.asarray(anomaly_type)).astype(str)
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
    )


def evaluate_model(model: BaseEstimator, test: pd.DataFrame) -> Evaluation:
    """Score a fitted model on a test frame."""
    X, y = features_and_labels(test)
    return evaluate(y, model.predict(X), anomaly_scores(model, X), test[TYPE_COLUMN])


ZSCORE_COLUMNS = ("temp_zscore", "humidity_zscore", "pressure_zscore")
MAX_ZSCORE = (features.ROLLING_WINDOW - 1) ** 0.5
"""The largest |z-score| a reading can have when the window it is compared with contains it (population standard
deviation): sqrt(n - 1), exactly 3 for n = 10. The rule of thumb "beyond 3 standard deviations" never fires here."""
ZSCORE_THRESHOLD = 2.5


def baselines(test: pd.DataFrame, *, z_threshold: float = ZSCORE_THRESHOLD) -> dict[str, Evaluation]:
    """Two rules any model must beat: flag every reading; flag a reading whose largest |z-score| exceeds 2.5
    (not 3: see `MAX_ZSCORE`)."""
    y = test[LABEL_COLUMN].astype(bool).to_numpy().astype(int)
    types = test[TYPE_COLUMN]
    largest_z = test[list(ZSCORE_COLUMNS)].astype("float64").abs().max(axis=1).fillna(0.0).to_numpy()
    return {
        "flag_everything": evaluate(y, np.ones_like(y), np.ones(len(y)), types),
        "zscore_threshold": evaluate(y, (largest_z > z_threshold).astype(int), largest_z, types),
    }
