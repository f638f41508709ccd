"""The batch feature definition (`sensorops.features`) on small inputs worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sensorops import events, features


def event(sensor: str = "sensor-001", ts: str = "2026-11-27T09:00:00.000Z", **values) -> dict:
    base = {
        "schema_version": 1,
        "sensor_id": sensor,
        "timestamp": ts,
        "temperature": 21.0,
        "humidity": 50.0,
        "pressure": 1013.0,
        "is_anomaly": False,
        "anomaly_type": "none",
        "location": {"building": "B1", "floor": 2, "room": "R201"},
        "device_info": {"model": "TH-200", "firmware_version": "1.4.2", "battery_level": 87.5},
    }
    return {**base, **values}


def test_columns_are_the_agreed_table():
    out = features.compute_features([event()])
    assert list(out.columns) == features.FEATURE_COLUMNS
    assert len(features.FEATURE_COLUMNS) == 32
    assert str(out["event_time"].dtype) == "datetime64[ms, UTC]"


def test_flattens_nested_fields():
    row = features.compute_features([event()]).iloc[0]
    assert (row.building, row.floor, row.room) == ("B1", 2, "R201")
    assert (row.device_model, row.firmware_version, row.battery_level) == ("TH-200", "1.4.2", 87.5)


@pytest.mark.parametrize(
    ("ts", "hour", "dow", "weekend", "business"),
    [
        ("2026-11-27T09:00:00.000Z", 9, 4, False, True),  # Friday morning
        ("2026-11-27T18:00:00.000Z", 18, 4, False, False),  # Friday, 18:00 is after hours
        ("2026-11-29T10:00:00.000Z", 10, 6, True, False),  # Sunday
        ("2026-11-30T07:59:59.999Z", 7, 0, False, False),  # Monday before 8
    ],
)
def test_temporal_features(ts, hour, dow, weekend, business):
    row = features.compute_features([event(ts=ts)]).iloc[0]
    assert (row.hour, row.day_of_week, row.is_weekend, row.is_business_hours) == (hour, dow, weekend, business)


def test_rolling_window_is_last_n_readings_of_the_sensor():
    n = features.ROLLING_WINDOW
    temps = [20.0 + i for i in range(n + 3)]
    evs = [event(ts=f"2026-11-27T09:00:{i:02d}.000Z", temperature=t) for i, t in enumerate(temps)]
    evs.insert(5, event(sensor="other", temperature=100.0))  # another sensor does not leak in
    out = features.compute_features(evs)
    mine = out[out.sensor_id == "sensor-001"].reset_index(drop=True)
    window = np.array(temps[-n:])
    assert mine.temp_rolling_mean.iloc[-1] == pytest.approx(window.mean())
    assert mine.temp_rolling_std.iloc[-1] == pytest.approx(window.std(ddof=0), abs=1e-6)
    assert mine.temp_zscore.iloc[-1] == pytest.approx((temps[-1] - window.mean()) / window.std(ddof=0), rel=1e-5)
    assert mine.temp_rolling_mean.iloc[0] == 20.0 and mine.temp_rolling_std.iloc[0] == 0.0
    assert mine.temp_zscore.iloc[0] == 0.0


def test_stuck_sensor_has_zero_std_and_zscore():
    evs = [event(ts=f"2026-11-27T09:00:{i:02d}.000Z", pressure=1013.3) for i in range(15)]
    out = features.compute_features(evs)
    assert (out.pressure_rolling_std == 0).all()
    assert (out.pressure_zscore == 0).all()


def test_nulls_are_skipped_by_the_window_and_propagate_to_the_row():
    evs = [
        event(ts="2026-11-27T09:00:00.000Z", temperature=20.0),
        event(ts="2026-11-27T09:00:01.000Z", temperature=None),
        event(ts="2026-11-27T09:00:02.000Z", temperature=24.0),
    ]
    out = features.compute_features(evs)
    assert out.temp_rolling_mean.tolist() == [20.0, 20.0, 22.0]
    assert math.isnan(out.temp_zscore.iloc[1])
    assert out.trend_category.iloc[1] == "unknown"
    assert math.isnan(out.temp_rate_of_change.iloc[1]) and math.isnan(out.temp_rate_of_change.iloc[2])
    assert math.isnan(out.comfort_index.iloc[1])


def test_rate_of_change_per_second_in_arrival_order():
    evs = [
        event(ts="2026-11-27T09:00:00.000Z", temperature=20.0),
        event(ts="2026-11-27T09:00:00.500Z", temperature=21.0),  # +1 in 0.5 s
        event(ts="2026-11-27T09:00:00.250Z", temperature=22.0),  # out of order: dt < 0
        event(ts="2026-11-27T09:00:02.250Z", temperature=21.0),  # -1 in 2 s
    ]
    out = features.compute_features(evs)
    rates = out.temp_rate_of_change.tolist()
    assert math.isnan(rates[0]) and math.isnan(rates[2])
    assert rates[1] == pytest.approx(2.0) and rates[3] == pytest.approx(-0.5)


def test_derived_features():
    row = features.compute_features([event(temperature=30.0, humidity=40.0)]).iloc[0]
    assert row.comfort_index == pytest.approx(30.0 - 0.55 * 0.6 * 15.5)
    assert row.temp_humidity_interaction == pytest.approx(12.0)


def test_trend_category():
    temps = [20.0, 20.0, 22.0, 20.0, 19.0]
    evs = [event(ts=f"2026-11-27T09:00:0{i}.000Z", temperature=t) for i, t in enumerate(temps)]
    # means: 20, 20, 20.667, 20.5, 20.2 -> diffs: 0, 0, 1.333, -0.5 (stable, not < -0.5), -1.2
    assert features.compute_features(evs).trend_category.tolist() == ["stable", "stable", "rising", "stable", "falling"]


def test_output_keeps_input_order():
    evs = [event(sensor=s, ts=f"2026-11-27T09:00:0{i}.000Z") for i, s in enumerate("abcab")]
    assert features.compute_features(evs).sensor_id.tolist() == list("abcab")


def test_accepts_flat_dataframe():
    flat = events.events_frame([event(), event(ts="2026-11-27T09:00:01.000Z", temperature=23.0)])
    from_flat = features.compute_features(flat)
    from_nested = features.compute_features([event(), event(ts="2026-11-27T09:00:01.000Z", temperature=23.0)])
    pd.testing.assert_frame_equal(from_flat, from_nested)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe", "invalid_encoding"),
        (b'{"sensor_id": "\xff"}', "invalid_encoding"),
        (b"{" + b" " * events.MAX_VALUE_BYTES + b"}", "too_large"),
        (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": NaN}', "invalid_json"),
        (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": 1e400}', "invalid_json"),
        (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "pressure": 1.797e308}), "out_of_range"),
        (json.dumps({"sensor_id": "s", "timestamp": "9999-12-31T00:00:00Z"}), "out_of_range"),
        (json.dumps({"sensor_id": "s", "timestamp": "1999-12-31T23:59:59Z"}), "out_of_range"),
        (json.dumps({"sensor_id": "s", "timestamp": "1970-01-01T00:00:00Z"}), "out_of_range"),
        (b"[1, 2]", "invalid_json"),
        (json.dumps({"timestamp": "2026-11-27T09:00:00Z"}), "missing_field"),
        (json.dumps({"sensor_id": "s", "timestamp": None}), "missing_field"),
        (json.dumps({"sensor_id": 7, "timestamp": "2026-11-27T09:00:00Z"}), "wrong_type"),
        (json.dumps({"sensor_id": "s", "timestamp": "yesterday"}), "wrong_type"),
        (json.dumps({"sensor_id": "s", "timestamp": "2026-02-30T09:00:00Z"}), "wrong_type"),
        (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": "hot"}), "wrong_type"),
        (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "humidity": True}), "wrong_type"),
        (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": None}), None),
        (json.dumps(event()), None),
    ],
)
def test_dead_letter_reason(payload, reason):
    assert events.dead_letter_reason(payload) == reason


def test_split_payloads_balances():
    payloads = [json.dumps(event()), "oops", json.dumps({"sensor_id": "x"}), json.dumps(event(sensor="b"))]
    valid, dead = events.split_payloads(payloads)
    assert len(valid) + len(dead) == len(payloads)
    assert valid.sensor_id.tolist() == ["sensor-001", "b"]
    assert [r for _, r in dead] == ["invalid_json", "missing_field"]


def test_timestamp_truncated_to_milliseconds():
    assert events.parse_timestamp("2026-11-27T09:00:01.123456Z") == pd.Timestamp("2026-11-27T09:00:01.123Z")
    assert events.parse_timestamp("2026-11-27T09:00:01Z") == pd.Timestamp("2026-11-27T09:00:01Z")
