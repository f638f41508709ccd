"""The generator: reproducible, labelled at the requested rate, schema-valid, with visible daily patterns."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest

from sensorops import events, generator
from sensorops.errors import UserError


@pytest.fixture(scope="module")
def day() -> pd.DataFrame:
    """One day of 20 sensors at one reading a second (1.7 M events): enough for per-type rates."""
    return generator.simulate(n_sensors=20, days=1, interval_s=1.0, anomaly_rate=0.08, seed=7)


def test_same_seed_same_events() -> None:
    a = generator.simulate(n_sensors=5, duration_s=600, seed=3)
    b = generator.simulate(n_sensors=5, duration_s=600, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert events.serialize(a) == events.serialize(b)


def test_other_seed_other_events() -> None:
    a = generator.simulate(n_sensors=5, duration_s=600, seed=3)
    b = generator.simulate(n_sensors=5, duration_s=600, seed=4)
    assert not np.allclose(a["temperature"].fillna(0), b["temperature"].fillna(0))


def test_chunked_run_is_one_continuous_timeline() -> None:
    sim = generator.SensorSimulator(generator.GeneratorConfig(n_sensors=4, interval_s=1.0, seed=1), start="2026-01-05")
    frames = pd.concat(list(sim.chunks(3000, chunk_ticks=97)), ignore_index=True)
    ts = frames.groupby("sensor_id", observed=True)["timestamp"].diff().dropna()
    assert (ts == pd.Timedelta(seconds=1)).all()
    assert len(frames) == 4 * 3000
    # Episodes cross chunk boundaries: a stuck run keeps exactly the same values across the boundary.
    for _, g in frames.groupby("sensor_id", observed=True):
        stuck = g["anomaly_type"].astype(str).to_numpy() == "stuck"
        starts = np.flatnonzero(stuck & ~np.r_[False, stuck[:-1]])
        for s in starts:
            end = s
            while end + 1 < len(g) and stuck[end + 1]:
                end += 1
            run = g.iloc[s : end + 1][["temperature", "humidity", "pressure"]]
            assert (run.nunique(dropna=False) == 1).all(), "a stuck episode changed value"


def test_overall_anomaly_rate_close_to_requested(day: pd.DataFrame) -> None:
    assert day["is_anomaly"].mean() == pytest.approx(0.08, rel=0.1)
    assert (day["is_anomaly"] == (day["anomaly_type"].astype(str) != "none")).all()


def test_rate_per_type_close_to_mix(day: pd.DataFrame) -> None:
    shares = day["anomaly_type"].astype(str).value_counts(normalize=True)
    for kind, weight in generator.DEFAULT_MIX.items():
        assert shares[kind] == pytest.approx(0.08 * weight, rel=0.25), kind


@pytest.mark.parametrize("rate", [0.0, 0.02, 0.3, 0.5])
def test_rate_is_respected_across_the_range(rate: float) -> None:
    readings = generator.simulate(n_sensors=20, duration_s=6 * 3600, interval_s=1.0, anomaly_rate=rate, seed=11)
    if rate == 0:
        assert not readings["is_anomaly"].any()
    else:
        assert readings["is_anomaly"].mean() == pytest.approx(rate, rel=0.15)


def test_custom_mix_only_produces_requested_types() -> None:
    readings = generator.simulate(n_sensors=10, duration_s=3600, anomaly_rate=0.2, anomaly_mix={"spike": 1, "stuck": 1})
    assert set(readings["anomaly_type"].astype(str)) == {"none", "spike", "stuck"}


def test_daily_cycle_is_visible(day: pd.DataFrame) -> None:
    normal = day[~day["is_anomaly"]]
    by_hour = normal.groupby(normal["timestamp"].dt.hour)["temperature"].mean()
    assert len(by_hour) == 24
    assert by_hour.max() - by_hour.min() > 2.0  # degrees between night and afternoon
    assert by_hour.idxmax() in range(12, 18)
    assert by_hour.idxmin() in (*range(0, 7), 23)


def test_weekend_is_cooler_than_weekday_office_hours() -> None:
    week = generator.simulate(n_sensors=5, days=7, interval_s=60, anomaly_rate=0, start="2026-11-23")  # a Monday
    ts = week["timestamp"]
    office = week[(ts.dt.dayofweek < 5) & ts.dt.hour.between(10, 16)]["temperature"].mean()
    weekend = week[(ts.dt.dayofweek >= 5) & ts.dt.hour.between(10, 16)]["temperature"].mean()
    assert office - weekend > 1.0


def test_humidity_moves_against_temperature(day: pd.DataFrame) -> None:
    normal = day[~day["is_anomaly"]]
    per_sensor = normal.groupby("sensor_id", observed=True)[["temperature", "humidity"]].corr().xs("humidity", level=1)
    assert (per_sensor["temperature"] < -0.5).all()


def test_anomalies_are_visible_in_the_readings(day: pd.DataFrame) -> None:
    d = day.sort_values(["sensor_id", "timestamp"], kind="stable")
    kind = d["anomaly_type"].astype(str)
    window = d["timestamp"].dt.floor("10min")
    baseline = (
        d["temperature"].where(kind == "none").groupby([d["sensor_id"], window], observed=True).transform("median")
    )
    dev = (d["temperature"] - baseline).abs()
    assert dev[kind == "spike"].min() > 3.0
    assert dev[kind == "drift"].median() > 3.0
    assert dev[kind == "none"].quantile(0.99) < 1.5
    nulls = d[["temperature", "humidity", "pressure"]].isna().any(axis=1)
    assert (nulls == (kind == "dropout")).all()
    step = d.groupby("sensor_id", observed=True)["temperature"].diff().abs()
    assert step[kind == "erratic"].median() > 5 * step[kind == "none"].median()


def test_every_event_validates_against_the_schema() -> None:
    readings = generator.simulate(n_sensors=8, duration_s=250, anomaly_rate=0.5, seed=5)
    dicts = events.to_dicts(readings)
    assert events.validate(dicts) == []
    assert {d["anomaly_type"] for d in dicts} == set(generator.ANOMALY_TYPES)


def test_schema_rejects_a_broken_event() -> None:
    good = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1))[0]
    bad = [
        dict(good, timestamp="27/11/2026"),
        dict(good, is_anomaly=True),
        {k: v for k, v in good.items() if k != "location"},
    ]
    errors = events.validate(bad)
    assert {e.split(":")[0] for e in errors} == {"event 0", "event 1", "event 2"}


def test_serialized_values_match_the_frame() -> None:
    readings = generator.simulate(n_sensors=3, duration_s=20, anomaly_rate=0.5, seed=2)
    keys, values = events.serialize(readings)
    assert keys == [s.encode() for s in readings["sensor_id"].astype(str)]
    first = orjson.loads(values[0])
    row = readings.iloc[0]
    assert first["sensor_id"] == row["sensor_id"]
    assert first["timestamp"] == row["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert first["location"] == {"building": row["building"], "floor": int(row["floor"]), "room": row["room"]}
    for i, v in enumerate(values):
        d = orjson.loads(v)
        t = readings["temperature"].iat[i]
        assert (d["temperature"] is None) if np.isnan(t) else d["temperature"] == t


def test_metadata_is_stable_per_sensor_and_battery_drains() -> None:
    readings = generator.simulate(n_sensors=8, days=2, interval_s=300, anomaly_rate=0)
    per_sensor = readings.groupby("sensor_id", observed=True)
    assert (per_sensor[["building", "floor", "room", "model", "firmware_version"]].nunique() == 1).all().all()
    first, last = per_sensor["battery_level"].first(), per_sensor["battery_level"].last()
    assert ((first - last) > 0.5).sum() >= 6  # drains (a sensor may have had its battery replaced)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_sensors": 0}, "at least 1"),
        ({"interval_s": -1}, "positive"),
        ({"anomaly_rate": 1.2}, "between 0 and 0.5"),
        ({"anomaly_mix": {"meteor": 1}}, "unknown anomaly types"),
    ],
)
def test_invalid_config_is_a_user_error(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        generator.GeneratorConfig(**kwargs)
