"""Training without services: the time split, search, metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sensorops import events, features, generator, training
from sensorops.errors import UserError


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Six hours of ten sensors, one reading every 15 s, through the batch feature computation."""
    readings = generator.simulate(n_sensors=10, duration_s=6 * 3600, interval_s=15, seed=7)
    return features.compute_features(events.to_dicts(readings))


@pytest.fixture(scope="module")
def split(table: pd.DataFrame) -> training.TimeSplit:
    return training.time_split(table, train_fraction=0.7)


def test_split_has_no_time_overlap(table: pd.DataFrame, split: training.TimeSplit) -> None:
    assert split.train.event_time.max() < split.cutoff <= split.test.event_time.min()
    assert len(split.train) + len(split.test) == len(table)
    assert set(split.train.event_time).isdisjoint(split.test.event_time)
    balance = split.balance()
    assert list(balance.index) == ["train", "test"]
    assert 0 < balance.loc["test", "anomaly_rate"] < 0.5


def test_single_class_is_named(table: pd.DataFrame) -> None:
    normal_only = table[~table.is_anomaly]
    with pytest.raises(UserError, match=r"single class: the training period \(.*\) has only normal rows"):
        training.time_split(normal_only)


def test_missing_columns_are_named(table: pd.DataFrame) -> None:
    with pytest.raises(UserError, match="lacks the columns temp_zscore, trend_category"):
        training.time_split(table.drop(columns=["temp_zscore", "trend_category"]))


def test_empty_frame_is_named(table: pd.DataFrame) -> None:
    with pytest.raises(UserError, match="empty range"):
        training.time_split(table.iloc[0:0])


def test_time_folds_are_ordered(split: training.TimeSplit) -> None:
    folds = training.time_folds(split.train.event_time, n_splits=3)
    assert len(folds) == 3
    times = split.train.event_time.to_numpy()
    for train_idx, val_idx in folds:
        assert times[train_idx].max() < times[val_idx].min()
    assert len(folds[0][0]) < len(folds[1][0]) < len(folds[2][0])  # expanding window


def test_unknown_model_is_named() -> None:
    with pytest.raises(UserError, match="unknown model gbm"):
        training.model_names("random_forest,gbm")
    assert training.model_names("all") == list(training.MODELS)


def test_evaluate_on_a_hand_made_case() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    pred = np.array([0, 0, 1, 0, 1, 0])
    scores = np.array([0.1, 0.2, 0.7, 0.3, 0.9, 0.4])
    types = pd.Series(["none"] * 4 + ["spike", "drift"])
    e = training.evaluate(y, pred, scores, types)
    assert e.metrics["precision"] == pytest.approx(0.5)
    assert e.metrics["recall"] == pytest.approx(0.5)
    assert e.metrics["false_alarm_rate"] == pytest.approx(0.25)
    assert e.recall_by_type == {"drift": 0.0, "spike": 1.0}
    assert e.confusion.tolist() == [[3, 1], [1, 1]]
    assert e.flat()["tp"] == 1.0


def test_flag_everything_baseline(split: training.TimeSplit) -> None:
    base = training.baselines(split.test)["flag_everything"]
    rate = split.test.is_anomaly.mean()
    assert base.metrics["recall"] == 1.0
    assert base.metrics["precision"] == pytest.approx(rate)
    assert base.metrics["false_alarm_rate"] == 1.0


def test_normal_only_detector_never_sees_anomalies(split: training.TimeSplit) -> None:
    X, y = training.features_and_labels(split.train)
    detector = training.MODELS["isolation_forest"].build(0).fit(X, y)
    assert detector.n_fit_rows_ == int((y == 0).sum())
    svm = training.MODELS["one_class_svm"].build(0)
    svm.set_params(max_fit_rows=500).fit(X, y)
    assert svm.n_fit_rows_ == 500
    assert set(np.unique(detector.predict(X))) <= {0, 1}


def test_search_beats_the_baselines(split: training.TimeSplit) -> None:
    ticks = []
    result = training.search_model("random_forest", split.train, split.test, n_folds=2, tick=lambda: ticks.append(1))
    assert len(ticks) == training.fits_per_model("random_forest", 2)
    base = training.baselines(split.test)
    assert result.evaluation.metrics["f1"] > max(b.metrics["f1"] for b in base.values())
    again = training.evaluate_model(result.model, split.test)
    assert again.metrics == result.evaluation.metrics
    importance = training.feature_importance(result.model)
    assert importance.sum() == pytest.approx(1.0)


def test_inputs_have_stable_types(table: pd.DataFrame) -> None:
    X = training.model_inputs(table.head(50))
    assert list(X.columns) == list(training.MODEL_INPUTS)
    assert all(X[c].dtype == "float64" for c in training.NUMERIC_FEATURES)
    assert X["trend_category"].map(type).eq(str).all()


def test_zscore_cannot_exceed_its_bound(table: pd.DataFrame) -> None:
    largest = table[list(training.ZSCORE_COLUMNS)].abs().max().max()
    # Up to rounding: the variance is mean(x^2) - mean(x)^2, whose error grows with mean^2 / variance (pressure).
    assert largest <= training.MAX_ZSCORE + 1e-4
    assert training.ZSCORE_THRESHOLD < training.MAX_ZSCORE  # the baseline can fire at all


def test_fitted_forests_predict_on_one_thread(split: training.TimeSplit) -> None:
    # Threads add a forest's tree probabilities in varying order; the last-bit noise reorders tied scores, and the
    # AUCs logged to MLflow would then differ from those recomputed from the logged model.
    result = training.search_model("random_forest", split.train, split.test, n_jobs=2)
    forest = training.inner_pipeline(result.model).steps[-1][1]
    assert forest.n_jobs == 1
    assert training.evaluate_model(result.model, split.test).metrics == result.evaluation.metrics
