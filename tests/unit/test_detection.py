"""Detection quality (`scoring.detection`) on small frames worked out by hand, and on the generator's own episodes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sensorops import generator
from sensorops.scoring import alerts, detection

T0 = pd.Timestamp("2026-11-27T09:00:00Z")


def frame(
    truth: list[int], flags: list[int], types: list[str | None] | None = None, sensor: str = "s1", step_s: float = 30
) -> pd.DataFrame:
    """A scores frame of one sensor, a reading every `step_s` seconds; types default to "drift" on anomalies."""
    types = types or ["drift" if t else "none" for t in truth]
    return pd.DataFrame(
        {
            "sensor_id": sensor,
            "event_time": [T0 + pd.Timedelta(seconds=step_s * i) for i in range(len(truth))],
            "score": [0.9 if f else 0.1 for f in flags],
            "decision": [bool(f) for f in flags],
            "model_version": "1",
            "is_anomaly": [bool(t) for t in truth],
            "anomaly_type": types,
        }
    )


TRUTH = [0, 0, 1, 1, 1, 0, 0, 1, 0, 0]
FLAGS = [0, 1, 0, 1, 0, 0, 0, 0, 0, 1]
TYPES = ["none", "none", "drift", "drift", "drift", "none", "none", "spike", "none", "none"]


def test_pointwise_by_hand() -> None:
    m = detection.pointwise(frame(TRUTH, FLAGS, TYPES))
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 2, 3, 4)
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 4)
    assert m["f1"] == pytest.approx(2 / 7)  # 2 (1/3)(1/4) / (1/3 + 1/4)
    assert m["false_alarm_rate"] == pytest.approx(2 / 6)
    assert m["missed_alarm_rate"] == pytest.approx(3 / 4)


def test_zero_denominators_give_zero() -> None:
    empty = detection.pointwise(frame([], []))
    assert all(v == 0 for v in empty.values()) and len(empty) == 9
    only_anomalies = detection.pointwise(frame([1, 1], [1, 1]))
    assert only_anomalies["false_alarm_rate"] == 0.0 and only_anomalies["precision"] == 1.0
    never_flagged = detection.pointwise(frame([0, 1], [0, 0]))
    assert (
        never_flagged["precision"] == 0.0 and never_flagged["f1"] == 0.0 and never_flagged["missed_alarm_rate"] == 1.0
    )


def test_by_version() -> None:
    scores = frame(TRUTH, FLAGS, TYPES).assign(model_version=["1"] * 5 + ["2"] * 5)
    table = detection.by_version(scores)
    assert list(table.index) == ["1", "2"]
    assert table.loc["1", ["readings", "tp", "fp", "fn", "tn"]].tolist() == [5, 1, 1, 2, 1]
    assert table.loc["2", ["readings", "tp", "fp", "fn", "tn"]].tolist() == [5, 0, 1, 1, 3]
    assert table.loc["1", "precision"] == pytest.approx(0.5) and table.loc["2", "recall"] == 0.0


def test_truth_episodes_split_on_type_and_gaps_and_ignore_row_order() -> None:
    a = frame([1, 1, 1, 1, 0, 1, 0], [0] * 7, ["drift", "drift", "stuck", "stuck", "none", "stuck", None])
    b = frame([0, 1, 1], [0] * 3, ["none", None, ""], sensor="s2")  # an anomaly without a type is "other"
    scores = pd.concat([a, b]).sample(frac=1, random_state=1)
    episodes = detection.truth_episodes(scores)
    assert list(episodes.columns) == ["sensor_id", "anomaly_type", "start", "end", "readings"]
    assert episodes[["sensor_id", "anomaly_type", "readings"]].values.tolist() == [
        ["s1", "drift", 2],
        ["s1", "stuck", 2],
        ["s1", "stuck", 1],
        ["s2", "other", 2],
    ]
    assert episodes.loc[1, "start"] == T0 + pd.Timedelta(seconds=60)
    assert episodes.loc[1, "end"] == T0 + pd.Timedelta(seconds=90)


def test_episode_found_by_a_single_flag_with_its_delay_and_a_missed_one() -> None:
    result = detection.event_detection(frame(TRUTH, FLAGS, TYPES))
    assert result[["anomaly_type", "readings", "detected"]].values.tolist() == [["drift", 3, True], ["spike", 1, False]]
    assert result.loc[0, "delay_s"] == 30.0  # first reading of the drift at 60 s, its only flag at 90 s
    assert math.isnan(result.loc[1, "delay_s"])
    # Flags given apart from the frame: the spike found at once, the drift missed.
    other = detection.event_detection(frame(TRUTH, FLAGS, TYPES), np.array(TYPES) == "spike")
    assert other["detected"].tolist() == [False, True] and other.loc[1, "delay_s"] == 0.0


def test_detection_summary_per_type() -> None:
    types = ["drift"] * 3 + ["none"] + ["drift"] * 2 + ["none"] + ["spike"] + ["none"] + ["drift"]
    truth = [int(t != "none") for t in types]
    flags = [0, 0, 1, 0, 1, 0, 0, 0, 0, 0]  # drifts: 60 s late, at once, missed; the spike missed
    summary = detection.detection_summary(detection.event_detection(frame(truth, flags, types)))
    assert list(summary.columns) == ["episodes", "detected", "detection_rate", "median_delay_s", "p90_delay_s"]
    assert summary.loc["drift", ["episodes", "detected"]].tolist() == [3, 2]
    assert summary.loc["drift", "detection_rate"] == pytest.approx(2 / 3)
    assert summary.loc["drift", "median_delay_s"] == pytest.approx(30.0)  # of 60 and 0
    assert summary.loc["drift", "p90_delay_s"] == pytest.approx(54.0)
    assert summary.loc["spike", "detection_rate"] == 0.0 and math.isnan(summary.loc["spike", "median_delay_s"])


def test_detection_by_alerts_waits_for_the_alert() -> None:
    truth = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    flags = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]  # the second episode has two flags: no alert
    scores = frame(truth, flags)
    changes = alerts.episodes(scores)
    assert changes["status"].tolist() == ["open", "closed"]
    by_alerts = detection.event_detection(scores, changes)
    assert by_alerts["detected"].tolist() == [True, False]
    assert by_alerts.loc[0, "delay_s"] == 90.0  # the third flag, at reading 5, opened the alert
    assert detection.event_detection(scores)["delay_s"].tolist() == [30.0, 0.0]  # flags alone
    assert detection.event_detection(scores, alerts.episode_table(changes))["detected"].tolist() == [True, False]
    # With two normal readings in between, the alert stays open across the second episode: detected, delay 0.
    close = frame(truth[:10] + truth[14:], flags[:10] + flags[14:])
    by_alerts = detection.event_detection(close, alerts.episodes(close))
    assert by_alerts["detected"].tolist() == [True, True] and by_alerts["delay_s"].tolist() == [90.0, 0.0]


def alert(sensor: str, first_s: float, last_s: float) -> dict:
    first, last = (int((T0 + pd.Timedelta(seconds=s)).timestamp() * 1000) for s in (first_s, last_s))
    return dict(
        sensor_id=sensor, episode_id=f"{sensor}:{first}", status="closed", first_reading_ms=first, last_reading_ms=last
    )


def test_false_alarm_episodes_per_sensor_hour() -> None:
    a = frame([0, 1, 0], [0, 0, 0], sensor="a", step_s=3600)  # two hours, an anomaly at 1 h
    b = frame([0, 0], [0, 0], sensor="b", step_s=3600)  # one hour, no anomaly
    episodes = pd.DataFrame([alert("a", 3000, 3600), alert("a", 0, 0), alert("b", 0, 3600)])
    assert detection.false_alarm_episodes(episodes, pd.concat([a, b])) == pytest.approx(2 / 3)  # 2 false in 3 h
    assert detection.false_alarm_episodes(episodes.iloc[:1], pd.concat([a, b])) == 0.0  # ends on the anomaly
    single = frame([0], [0], sensor="b")  # no time spanned: zero sensor-hours
    assert detection.false_alarm_episodes(episodes.iloc[2:], single) == 0.0
    assert detection.false_alarm_episodes(episodes.iloc[:0], pd.concat([a, b])) == 0.0


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    """Five sensors, 4000 readings each, generated in chunks of 97 so that episodes cross chunk boundaries."""
    config = generator.GeneratorConfig(n_sensors=5, interval_s=1.0, anomaly_rate=0.1, seed=11)
    sim = generator.SensorSimulator(config, start="2026-01-05")
    readings = pd.concat(list(sim.chunks(4000, chunk_ticks=97)), ignore_index=True)
    flagged = readings["is_anomaly"].to_numpy()
    return readings.rename(columns={"timestamp": "event_time"}).assign(
        decision=flagged, score=flagged.astype(float), model_version="1"
    )


def test_truth_episodes_are_the_generators_episodes(simulated: pd.DataFrame) -> None:
    episodes = detection.truth_episodes(simulated)
    assert episodes["readings"].sum() == simulated["is_anomaly"].sum()
    counts = episodes["anomaly_type"].value_counts()
    assert set(counts.index) == set(generator.EPISODE_TICKS)  # every type injected and found
    assert counts["spike"] == (simulated["anomaly_type"] == "spike").sum()  # a spike is one reading
    # Contiguous: one reading a second from start to end.
    assert ((episodes["end"] - episodes["start"]).dt.total_seconds() == episodes["readings"] - 1).all()
    # Each episode has a length the generator can draw, unless the run cut it (first or last reading of a sensor).
    span = simulated.groupby("sensor_id", observed=True)["event_time"].agg(["min", "max"])
    cut = (episodes["start"] == episodes["sensor_id"].map(span["min"])) | (
        episodes["end"] == episodes["sensor_id"].map(span["max"])
    )
    lo = episodes["anomaly_type"].map(lambda t: generator.EPISODE_TICKS[t][0])
    hi = episodes["anomaly_type"].map(lambda t: generator.EPISODE_TICKS[t][1])
    assert (cut | episodes["readings"].between(lo, hi)).all()
    assert (~cut).sum() > 50
    # At least one normal reading between two episodes of a sensor.
    gaps = episodes.groupby("sensor_id")["start"].shift(-1) - episodes["end"]
    assert (gaps.dropna() >= pd.Timedelta(seconds=2)).all()


def test_perfect_flags_find_every_episode_at_once(simulated: pd.DataFrame) -> None:
    result = detection.event_detection(simulated)
    assert result["detected"].all() and (result["delay_s"] == 0).all()
    m = detection.pointwise(simulated)
    assert m["precision"] == m["recall"] == 1.0 and m["false_alarm_rate"] == 0.0
    changes = alerts.episodes(simulated)
    assert detection.false_alarm_episodes(changes, simulated) == 0.0  # every alert covers true anomalies
    long = result[result["readings"] >= alerts.EpisodeRule().k]
    assert detection.event_detection(simulated, changes).loc[long.index, "detected"].all()
