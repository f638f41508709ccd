"""Training on data whose faults come late: folds that hold both classes, FAR and MAR beside F1, event-level
detection, and the normal-behaviour detectors on the shipped SKAB slice against flag-everything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorops import events, features, generator, profiles, replay, training
from sensorops.errors import UserError

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"


def late_faults(n: int = 1200, start: int = 900) -> pd.DataFrame:
    """A feature table of one sensor whose anomalies all come in the last quarter (in three episodes)."""
    readings = generator.simulate(n_sensors=1, duration_s=n * 5, interval_s=5, anomaly_rate=0.0, seed=5)
    table = features.compute_features(events.to_dicts(readings))
    anomalous = np.zeros(len(table), dtype=bool)
    for a in (start, start + 100, start + 200):
        anomalous[a : a + 40] = True
    return table.assign(is_anomaly=anomalous, anomaly_type=np.where(anomalous, "drift", "none"))


def test_equal_slices_without_anomalies_are_recut() -> None:
    table = late_faults()
    y = table["is_anomaly"].to_numpy()
    assert any(not y[v].any() for _, v in training.time_folds(table["event_time"], 3))  # today's cut fails
    folds = training.time_folds(table["event_time"], 3, y)
    assert folds
    times = table["event_time"].to_numpy()
    for train_idx, val_idx in folds:
        assert y[train_idx].any() and not y[train_idx].all()
        assert y[val_idx].any() and not y[val_idx].all()
        assert times[train_idx].max() < times[val_idx].min()


def test_no_anomaly_at_all_is_a_one_line_error() -> None:
    table = late_faults()
    with pytest.raises(UserError, match="cannot cut the training period .* it has no anomaly"):
        training.time_folds(table["event_time"], 3, np.zeros(len(table), dtype=bool))


def test_search_no_longer_crashes_when_faults_come_late() -> None:
    table = late_faults()
    split = training.TimeSplit(train=table.iloc[:1100], test=table.iloc[1100:], cutoff=table["event_time"].iloc[1100])
    result = training.search_model("logistic_regression", split.train, split.test, n_folds=3)
    assert 0.0 <= result.cv_f1 <= 1.0


def test_metrics_have_far_mar_and_episodes() -> None:
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    pred = np.array([1, 0, 0, 1, 0, 0, 0, 0])
    times = pd.date_range("2026-01-01", periods=8, freq="s", tz="UTC")
    readings = pd.DataFrame({"sensor_id": "s", "event_time": times})
    e = training.evaluate(y, pred, pred.astype(float), pd.Series(np.where(y, "other", "none")), readings)
    assert e.metrics["false_alarm_rate"] == pytest.approx(1 / 4)
    assert e.metrics["missed_alarm_rate"] == pytest.approx(3 / 4)
    assert e.metrics["episodes"] == 2 and e.metrics["event_recall"] == 0.5
    assert e.metrics["median_delay_s"] == 1.0
    assert e.detection["detected"].tolist() == [True, False]


def test_flag_everything_is_always_a_baseline() -> None:
    table = late_faults()
    base = training.baselines(table.iloc[800:])
    assert base["flag_everything"].metrics["false_alarm_rate"] == 1.0
    assert base["flag_everything"].metrics["missed_alarm_rate"] == 0.0
    assert base["flag_everything"].metrics["event_recall"] == 1.0


def test_normal_detector_is_searched_like_any_model() -> None:
    table = late_faults()
    split = training.TimeSplit(train=table.iloc[:1100], test=table.iloc[1100:], cutoff=table["event_time"].iloc[1100])
    result = training.search_model("pca_spe_t2", split.train, split.test, n_folds=2)
    assert result.fit_rows == int((~split.train["is_anomaly"]).sum())  # normal rows only
    assert set(result.best_params) == {"variance", "quantile"}
    assert "pca_spe_t2" not in training.model_names("all")  # named, not in "all"
    assert training.model_names("pca_spe_t2,random_forest") == ["pca_spe_t2", "random_forest"]


@pytest.fixture(scope="module")
def skab_events() -> tuple[pd.DataFrame, tuple[str, ...]]:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    return replay.read_profile([SKAB], profile).events, profile.channel_names


def test_normal_detectors_on_skab(skab_events: tuple[pd.DataFrame, tuple[str, ...]]) -> None:
    """Point-wise, the first 400 readings of each record (normal operation) for training, the rest for testing.
    Measured: PCA SPE+T² F1 0.69, FAR 0.54, MAR 0.23; isolation forest F1 0.29, FAR 0.11, MAR 0.82; flagging
    everything F1 0.69, FAR 1, MAR 0 (53% of the test readings are anomalous)."""
    frame, channels = skab_events
    found = {}
    for name, detector in (("pca", training.PCADetector()), ("iforest", training.NormalIsolationForest())):
        scores = training.score_by_sensor(frame, detector, channels, train_rows=400, time_column="timestamp")
        found[name] = training.episodes.pointwise(scores)
        assert training.episodes.flag_detection(scores)["detected"].all()  # each record's fault is found
    everything = training.episodes.pointwise(scores.assign(decision=True))
    assert everything["false_alarm_rate"] == 1.0 and everything["f1"] == pytest.approx(0.693, abs=0.01)
    assert found["pca"]["f1"] == pytest.approx(0.687, abs=0.02)
    assert found["pca"]["false_alarm_rate"] < 0.6 and found["pca"]["missed_alarm_rate"] < 0.3
    assert found["iforest"]["false_alarm_rate"] < 0.2
