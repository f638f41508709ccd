"""The training data: which columns the models see, checks with a one-line error, and splits that respect time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sensorops import features
from sensorops.errors import UserError

log = logging.getLogger(__name__)

TIME_COLUMN = "event_time"
LABEL_COLUMN = "is_anomaly"
TYPE_COLUMN = "anomaly_type"

EXCLUDED_INPUTS = ("floor",)
NUMERIC_FEATURES: tuple[str, ...] = (
    *(c for c in features.NUMERIC_FEATURES if c not in EXCLUDED_INPUTS),
    "is_weekend",
    "is_business_hours",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("trend_category",)
MODEL_INPUTS: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
"""What the models see. Identity and place (sensor_id, building, room, firmware) are left out on purpose: a model
that learns *which* sensor misbehaved in the past does not detect anomalies, it remembers them."""

REQUIRED_COLUMNS: tuple[str, ...] = (TIME_COLUMN, LABEL_COLUMN, TYPE_COLUMN, *MODEL_INPUTS)


INPUT_KINDS = ("all", "deviations", "smoothed")


@dataclass(frozen=True)
class Inputs:
    """The columns a model sees: numbers as they are, categories one-hot encoded. The default is the building-climate
    table's `MODEL_INPUTS`; `for_features` gives any profile's."""

    numeric: tuple[str, ...] = NUMERIC_FEATURES
    categorical: tuple[str, ...] = CATEGORICAL_FEATURES

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @classmethod
    def for_features(cls, feature_set: features.FeatureSet, kind: str = "all") -> Inputs:
        """A profile's inputs, of one of `INPUT_KINDS`, never with the levels (the readings and their means) of the
        channels the profile detrends (`FeatureSet.detrend`): `all` numeric features, the `deviations` only (no
        channel's levels), or the `smoothed` window statistics only (`FeatureSet.smoothed`).

        Measured on SKAB (`sensorops train --profile`): the levels are the fault's signature (a closed valve lowers
        the flow and the current), and without them F1 fell from 0.84 to 0.67 (random forest) and from 0.60 to 0.30
        (PCA), split per sensor; the motor's temperature, though, drifts from record to record, and leaving out its
        levels alone (`detrend: [temperature, thermocouple]`) helps most models. The detectors of normal behaviour
        do best on `smoothed` inputs (see `training.normal`).
        """
        if kind not in INPUT_KINDS:
            raise UserError(f"inputs must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")
        if feature_set.profile.is_default:
            return cls()
        left_out = set(feature_set.levels if kind == "deviations" else feature_set.drifting)
        chosen = feature_set.smoothed if kind == "smoothed" else feature_set.numeric
        return cls(tuple(c for c in chosen if c not in left_out), ())

    @classmethod
    def of(cls, model: object) -> Inputs:
        """The inputs a fitted model was fitted on (`feature_names_in_`); the default for models saved without."""
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            return cls()
        names = [str(n) for n in names]
        return cls(
            tuple(n for n in names if n not in CATEGORICAL_FEATURES),
            tuple(n for n in names if n in CATEGORICAL_FEATURES),
        )


DEFAULT_INPUTS = Inputs()


def _as_utc(times: pd.Series) -> pd.Series:
    return pd.to_datetime(times, utc=True)  # naive times are UTC; aware ones are converted


def validate(frame: pd.DataFrame, *, what: str = "the data", inputs: Inputs = DEFAULT_INPUTS) -> None:
    """Raise `UserError` naming the problem: no rows, missing columns."""
    if frame.empty:
        raise UserError(f"empty range: {what} has no rows")
    missing = [c for c in (TIME_COLUMN, LABEL_COLUMN, TYPE_COLUMN, *inputs.columns) if c not in frame.columns]
    if missing:
        raise UserError(f"{what} lacks the columns {', '.join(missing)} (is it the feature table?)")


def require_both_classes(labels: pd.Series, *, what: str) -> None:
    """Raise `UserError` when `labels` hold one class only: no detector can be trained or scored on that."""
    counts = labels.astype(bool).value_counts()
    if len(counts) < 2:
        only = "anomalies" if bool(counts.index[0]) else "normal rows"
        raise UserError(
            f"single class: {what} has only {only} ({int(counts.iloc[0])} rows, {LABEL_COLUMN} is "
            f"{bool(counts.index[0])} everywhere); widen the date range or generate data with anomalies"
        )


@dataclass(frozen=True)
class TimeSplit:
    """Train on everything before `cutoff`, test on everything from `cutoff` on; or, split `per_sensor`, on each
    sensor's readings before its own cutoff (`cutoff` is then NaT)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp
    per_sensor: bool = False

    @property
    def train_period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return self.train[TIME_COLUMN].min(), self.train[TIME_COLUMN].max()

    @property
    def test_period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return self.test[TIME_COLUMN].min(), self.test[TIME_COLUMN].max()

    def balance(self) -> pd.DataFrame:
        """Rows, anomalies and anomaly rate of each side, and the count of each anomaly type."""
        rows = {}
        for side, part in (("train", self.train), ("test", self.test)):
            first, last = part[TIME_COLUMN].min(), part[TIME_COLUMN].max()
            row = {"from": first, "to": last, "rows": len(part), "anomalies": int(part[LABEL_COLUMN].sum())}
            row["anomaly_rate"] = row["anomalies"] / max(len(part), 1)
            row.update(part.loc[part[LABEL_COLUMN].astype(bool), TYPE_COLUMN].value_counts().sort_index().to_dict())
            rows[side] = row
        table = pd.DataFrame.from_dict(rows, orient="index")
        kinds = [c for c in table.columns if c not in ("from", "to", "rows", "anomalies", "anomaly_rate")]
        table[kinds] = table[kinds].fillna(0).astype(int)
        return table


def time_split(frame: pd.DataFrame, *, train_fraction: float = 0.7, inputs: Inputs = DEFAULT_INPUTS) -> TimeSplit:
    """Split at the moment `train_fraction` of the way through the time range; no timestamp is on both sides."""
    validate(frame, inputs=inputs)
    if not 0 < train_fraction < 1:
        raise UserError(f"train_fraction must be between 0 and 1, not {train_fraction}")
    times = _as_utc(frame[TIME_COLUMN])
    first, last = times.min(), times.max()
    cutoff = first + (last - first) * train_fraction
    before = (times < cutoff).to_numpy()
    train = frame.loc[before].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    test = frame.loc[~before].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    if train.empty or test.empty:
        raise UserError(
            f"cannot split by time: all {len(frame)} rows share one timestamp ({first}); widen the date range"
        )
    require_both_classes(train[LABEL_COLUMN], what=f"the training period ({first} to {cutoff})")
    require_both_classes(test[LABEL_COLUMN], what=f"the test period ({cutoff} to {last})")
    return TimeSplit(train=train, test=test, cutoff=cutoff)


def sensor_split(frame: pd.DataFrame, *, train_fraction: float = 0.7, inputs: Inputs = DEFAULT_INPUTS) -> TimeSplit:
    """Split each sensor's readings at the moment `train_fraction` of the way through its own time range: the first
    part of each record trains, the rest tests (the protocol of benchmarks such as SKAB, whose records are one
    sensor each, each starting with normal operation)."""
    validate(frame, inputs=inputs)
    if not 0 < train_fraction < 1:
        raise UserError(f"train_fraction must be between 0 and 1, not {train_fraction}")
    times = _as_utc(frame[TIME_COLUMN])
    by_sensor = times.groupby(frame["sensor_id"].astype(str).to_numpy())
    first, last = by_sensor.transform("min"), by_sensor.transform("max")
    before = (times < first + (last - first) * train_fraction).to_numpy()
    train = frame.loc[before].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    test = frame.loc[~before].sort_values(TIME_COLUMN, kind="stable").reset_index(drop=True)
    if train.empty or test.empty:
        raise UserError("cannot split by time per sensor: every sensor's readings share one timestamp")
    share = f"the first {train_fraction:.0%} of each sensor's readings"
    require_both_classes(train[LABEL_COLUMN], what=f"the training part ({share})")
    require_both_classes(test[LABEL_COLUMN], what="the test part (the rest of each sensor's readings)")
    return TimeSplit(train=train, test=test, cutoff=pd.NaT, per_sensor=True)


Folds = list[tuple[np.ndarray, np.ndarray]]


def _cut(values: np.ndarray, edges: np.ndarray) -> Folds:
    """Expanding-window folds at `edges`: fold k trains on slices 0..k and validates on slice k+1 (none empty)."""
    slice_of = np.searchsorted(edges, values, side="right")  # 0..len(edges)
    folds = []
    for k in range(len(edges)):
        train_idx, val_idx = np.flatnonzero(slice_of <= k), np.flatnonzero(slice_of == k + 1)
        if len(train_idx) and len(val_idx):
            folds.append((train_idx, val_idx))
    return folds


def _both_classes(y: np.ndarray, folds: Folds) -> bool:
    return bool(folds) and all(len(np.unique(y[t])) == 2 and len(np.unique(y[v])) == 2 for t, v in folds)


def time_folds(times: pd.Series, n_splits: int = 3, labels: pd.Series | np.ndarray | None = None) -> Folds:
    """Expanding-window folds over equal slices of time: fold k trains on slices 0..k and validates on slice k+1.

    Like scikit-learn's `TimeSeriesSplit`, but cut on timestamps rather than row counts, so a timestamp never
    falls on both sides of a fold. With `labels`, every fold's training part and validation slice hold both
    classes (F1 means nothing on a slice without anomalies, and scikit-learn raises on it): when equal slices of
    time do not, the slices are cut at equal shares of the anomalies instead (faults in real data come late),
    with fewer folds if need be (logged); when no cut works, a `UserError` says why.
    """
    values = _as_utc(pd.Series(times)).to_numpy()
    first, last = values.min(), values.max()
    edges = np.array([first + (last - first) * (i / (n_splits + 1)) for i in range(1, n_splits + 1)])
    folds = _cut(values, edges)
    if labels is None or _both_classes(y := np.asarray(labels).astype(bool), folds):
        if not folds:
            raise UserError("the training period is too short to cut into time-ordered folds")
        return folds
    anomalous = np.sort(values[y])
    for n in range(n_splits, 0, -1):
        shares = (
            anomalous[[int(np.ceil(len(anomalous) * i / (n + 1))) for i in range(1, n + 1)]] if len(anomalous) else []
        )
        folds = _cut(values, np.asarray(shares))
        if _both_classes(y, folds):
            if n < n_splits:
                log.warning("%d time-ordered folds hold both classes, not %d", len(folds), n_splits)
            return folds
    where = (
        f"its {len(anomalous)} anomalies lie in {pd.Timestamp(anomalous[0])} .. {pd.Timestamp(anomalous[-1])}"
        if len(anomalous)
        else "it has no anomaly"
    )
    raise UserError(
        f"cannot cut the training period ({pd.Timestamp(first)} .. {pd.Timestamp(last)}) into time-ordered folds that "
        f"each hold normal rows and anomalies: {where}; widen the range or use fewer --folds"
    )


def features_and_labels(frame: pd.DataFrame, inputs: Inputs = DEFAULT_INPUTS) -> tuple[pd.DataFrame, np.ndarray]:
    """The model inputs with stable dtypes (numbers as float64, categories as str) and the 0/1 labels."""
    validate(frame, inputs=inputs)
    return model_inputs(frame, inputs), frame[LABEL_COLUMN].astype(bool).to_numpy().astype(int)


def model_inputs(frame: pd.DataFrame, inputs: Inputs = DEFAULT_INPUTS) -> pd.DataFrame:
    """The `inputs` of `frame` (default `MODEL_INPUTS`), typed as the logged model signature expects."""
    missing = [c for c in inputs.columns if c not in frame.columns]
    if missing:
        raise UserError(f"the input lacks the columns {', '.join(missing)}")
    numeric = frame[list(inputs.numeric)].apply(pd.to_numeric, errors="coerce").astype("float64")
    categorical = frame[list(inputs.categorical)].astype("string").fillna("missing").astype(object)
    return pd.concat([numeric, categorical], axis=1).reset_index(drop=True)
