"""Detectors that learn the joint normal behaviour of all channels from normal readings only, with their thresholds
set on the training period: scikit-learn estimators that the search (`training.search`) and the metrics take like
any other model.

- `PCADetector`: the normal readings' principal components (those explaining `variance` of it). Two statistics:
  SPE (the squared prediction error, or Q: what the components cannot reconstruct, a broken correlation between
  channels) and Hotelling's T² (how far inside the components' space a reading lies from the normal mean).
- `NormalIsolationForest`: an isolation forest grown on normal readings only; its statistic is the anomaly score.

Both use the numeric columns of X (or `columns`), fill a missing value with the normal mean and standardise; `fit`
keeps the rows labelled normal (all rows when no labels are given: the labels never reach the detector). The
threshold of each statistic is its `quantile` over the training rows; `decision_function` is the largest statistic
divided by its threshold, minus 1 (above 0: anomalous), and `predict` returns 1 for an anomaly.

`score_by_sensor` fits one detector per sensor on its first readings and scores the rest (the protocol of
benchmarks such as SKAB, where each record starts with normal operation), as a scores frame for `training.episodes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sensorops.errors import UserError

MIN_FIT_ROWS = 10


class _NormalBehaviour(ClassifierMixin, BaseEstimator):
    """Fit on normal rows; thresholds at a quantile of the training statistics (see the module docstring)."""

    statistics: tuple[str, ...] = ()

    def _model(self) -> BaseEstimator:
        raise NotImplementedError

    def _statistics(self, Z: np.ndarray) -> np.ndarray:
        """One column per statistic (growing with anomaly) for standardised rows `Z`."""
        raise NotImplementedError

    def _standardised(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        values = frame[self.columns_].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        return self.detector_[:-1].transform(values)

    def fit(self, X: pd.DataFrame | np.ndarray, y: np.ndarray | None = None) -> _NormalBehaviour:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        normal = frame if y is None else frame[np.asarray(y) == 0]
        if len(normal) < MIN_FIT_ROWS:
            raise UserError(f"{type(self).__name__} needs at least {MIN_FIT_ROWS} normal rows, got {len(normal)}")
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        self.columns_ = list(self.columns) if self.columns is not None else numeric
        values = normal[self.columns_].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        steps = [("impute", SimpleImputer(strategy="mean", keep_empty_features=True)), ("scale", StandardScaler())]
        self.detector_ = Pipeline([*steps, ("model", self._model())]).fit(values)
        train = self._statistics(self._standardised(normal))
        self.thresholds_ = np.maximum(np.quantile(train, self.quantile, axis=0), np.finfo(float).tiny)
        self.classes_ = np.array([0, 1])
        self.n_fit_rows_ = len(normal)
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return self

    def statistics_frame(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Each statistic of each row, divided by its threshold (above 1: beyond what the training period saw)."""
        ratios = self._statistics(self._standardised(X)) / self.thresholds_
        return pd.DataFrame(ratios, columns=list(self.statistics))

    def decision_function(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return self.statistics_frame(X).to_numpy().max(axis=1) - 1.0

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)


class PCADetector(_NormalBehaviour):
    """SPE (Q) and Hotelling's T² of the principal components explaining `variance` of the normal readings."""

    statistics = ("spe", "t2")

    def __init__(self, variance: float = 0.9, quantile: float = 0.99, columns: Sequence[str] | None = None):
        self.variance = variance
        self.quantile = quantile
        self.columns = columns

    def _model(self) -> BaseEstimator:
        return PCA(n_components=self.variance, svd_solver="full")

    def _statistics(self, Z: np.ndarray) -> np.ndarray:
        pca = self.detector_.named_steps["model"]
        t = pca.transform(Z)
        spe = ((Z - pca.inverse_transform(t)) ** 2).sum(axis=1)
        t2 = (t**2 / pca.explained_variance_).sum(axis=1)
        return np.column_stack([spe, t2])


class NormalIsolationForest(_NormalBehaviour):
    """An isolation forest grown on normal readings; anomalous beyond the `quantile` of its training scores."""

    statistics = ("isolation",)

    def __init__(
        self,
        n_estimators: int = 200,
        quantile: float = 0.99,
        columns: Sequence[str] | None = None,
        random_state: int = 0,
    ):
        self.n_estimators = n_estimators
        self.quantile = quantile
        self.columns = columns
        self.random_state = random_state

    def _model(self) -> BaseEstimator:
        return IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state)

    def _statistics(self, Z: np.ndarray) -> np.ndarray:
        return -self.detector_.named_steps["model"].score_samples(Z)[:, None]


# Saved models name their classes by path; the package re-exports them (see `models.NormalOnlyDetector`).
PCADetector.__module__ = NormalIsolationForest.__module__ = "sensorops.training"


def score_by_sensor(
    frame: pd.DataFrame,
    detector: BaseEstimator,
    columns: Sequence[str],
    *,
    train_rows: int,
    time_column: str = "event_time",
) -> pd.DataFrame:
    """Per sensor, fit a clone of `detector` on the sensor's first `train_rows` readings (its normal ones) and score
    the rest. Returns a scores frame: sensor_id, event_time, is_anomaly, anomaly_type, score, decision."""
    parts = []
    for sensor, readings in frame.sort_values(time_column, kind="stable").groupby("sensor_id", sort=True):
        train, test = readings.iloc[:train_rows], readings.iloc[train_rows:]
        if test.empty:
            continue
        model = clone(detector).set_params(columns=list(columns))
        model.fit(train, train["is_anomaly"].astype(int).to_numpy())
        score = model.decision_function(test)
        parts.append(
            pd.DataFrame(
                {
                    "sensor_id": str(sensor),
                    "event_time": test[time_column].to_numpy(),
                    "is_anomaly": test["is_anomaly"].astype(bool).to_numpy(),
                    "anomaly_type": test["anomaly_type"].to_numpy(),
                    "score": score,
                    "decision": score > 0,
                }
            )
        )
    if not parts:
        raise UserError(f"no sensor has more than {train_rows} readings to score after its training part")
    return pd.concat(parts, ignore_index=True)
