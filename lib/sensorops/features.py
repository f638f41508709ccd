"""The feature table: one definition shared by the stream job, training and real-time scoring.

One row per valid sensor event. The stream job (`sensorops.stream`) computes it in Flink SQL; `compute_features`
computes it in pandas for training and tests. Both follow the definitions below, and a test checks that they agree on
the same input (to floating-point tolerance).

Order. Per-sensor features (rolling statistics, rate of change) follow the order in which a sensor's readings
*arrive* (the Kafka log order of its partition; the key is the sensor id), not the order of their timestamps.
That is what a real-time scorer sees too, it keeps late events instead of dropping them, and it needs no waiting
for the watermark, so a feature row leaves the job milliseconds after its event arrives.

Definitions (`x` is one of temperature, humidity, pressure; `n` is `ROLLING_WINDOW`):

- `event_time`: the event's `timestamp`, UTC, millisecond precision.
- `hour` (0-23, UTC), `day_of_week` (Monday=0 ... Sunday=6), `is_weekend` (Saturday or Sunday),
  `is_business_hours` (not a weekend, `BUSINESS_HOURS[0] <= hour < BUSINESS_HOURS[1]`).
- `<x>_rolling_mean`, `<x>_rolling_std`: mean and population standard deviation of the non-null values among the
  sensor's last `n` readings, the current one included. The variance is computed as mean(x^2) - mean(x)^2, and
  counts as 0 below `TOLERANCE` (so that a stuck sensor has exactly 0, not floating-point noise).
- `<x>_zscore` (`temp_zscore` for temperature): (x - rolling_mean) / rolling_std; 0 when the std is 0; null when
  x is null.
- `<x>_rate_of_change`: (x - previous x) / seconds since the previous reading of the sensor, in units per second;
  null for the first reading, when either value is null, or when the previous reading is not older (dt <= 0).
- `comfort_index`: Thom's discomfort index in degrees C, T - 0.55 (1 - RH/100) (T - 14.5).
- `temp_humidity_interaction`: T * RH / 100.
- `trend_category`: 'rising' when temperature - temp_rolling_mean > `TREND_THRESHOLD` + `TOLERANCE`, 'falling'
  when < -(`TREND_THRESHOLD` + `TOLERANCE`), 'stable' otherwise, 'unknown' when temperature is null.

Which events are valid, and how a raw value becomes a flat event, is the wire format's business: `sensorops.events`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from sensorops import events
from sensorops.events import EVENT_COLUMNS, events_frame

ROLLING_WINDOW = 10
"""Readings per sensor in the rolling window, the current one included."""

BUSINESS_HOURS = (8, 18)
TREND_THRESHOLD = 0.5
"""Degrees C above (below) the rolling mean that make a reading 'rising' ('falling')."""
TOLERANCE = 1e-6
"""Floating-point noise: a smaller variance is 0, and a trend must clear its threshold by this much. (Flink SQL's
ROUND, the other way to absorb noise, goes through BigDecimal and cost the stream job a fifth of its CPU.)"""

CHANNELS = dict(zip(events.CHANNELS, ("temp", "humidity", "pressure")))
"""Measured channels and the prefix of their feature columns."""

TEMPORAL_COLUMNS = ["hour", "day_of_week", "is_weekend", "is_business_hours"]
ROLLING_COLUMNS = [f"{p}_{s}" for p in CHANNELS.values() for s in ("rolling_mean", "rolling_std", "zscore")]
RATE_COLUMNS = [f"{p}_rate_of_change" for p in CHANNELS.values()]
DERIVED_COLUMNS = ["comfort_index", "temp_humidity_interaction", "trend_category"]

FEATURE_COLUMNS = EVENT_COLUMNS + TEMPORAL_COLUMNS + ROLLING_COLUMNS + RATE_COLUMNS + DERIVED_COLUMNS
"""The columns of the feature table, in order."""

NUMERIC_FEATURES = (
    ["temperature", "humidity", "pressure", "floor", "battery_level", "hour", "day_of_week"]
    + ROLLING_COLUMNS
    + RATE_COLUMNS
    + ["comfort_index", "temp_humidity_interaction"]
)
"""Numeric columns a model can take as they are (booleans and categories need encoding)."""


def compute_features(events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """The feature table for valid events given in arrival order (the batch twin of the stream job).

    `events` are nested event dicts as produced, or a DataFrame of them or of flat `EVENT_COLUMNS` rows.
    Returns one row per event, in the input order, with exactly `FEATURE_COLUMNS`.
    """
    df = events_frame(events).reset_index(drop=True)
    ts = df["event_time"]
    df["hour"] = ts.dt.hour.astype("int32")
    df["day_of_week"] = ts.dt.dayofweek.astype("int32")
    df["is_weekend"] = df["day_of_week"] >= 5
    df["is_business_hours"] = ~df["is_weekend"] & (df["hour"] >= BUSINESS_HOURS[0]) & (df["hour"] < BUSINESS_HOURS[1])
    by_sensor = df.groupby("sensor_id", sort=False)
    dt_s = (ts - by_sensor["event_time"].shift(1)).dt.total_seconds()
    for channel, prefix in CHANNELS.items():
        x = df[channel]
        rolling = by_sensor[channel].rolling(ROLLING_WINDOW, min_periods=1)
        mean = rolling.mean().reset_index(level=0, drop=True).sort_index()
        mean_sq = (
            (x * x)
            .groupby(df["sensor_id"], sort=False)
            .rolling(ROLLING_WINDOW, min_periods=1)
            .mean()
            .reset_index(level=0, drop=True)
            .sort_index()
        )
        var = mean_sq - mean * mean
        var = var.mask(var < TOLERANCE, 0.0)
        std = np.sqrt(var)
        df[f"{prefix}_rolling_mean"] = mean
        df[f"{prefix}_rolling_std"] = std
        df[f"{prefix}_zscore"] = np.where(x.isna(), np.nan, np.where(std > 0, (x - mean) / std.where(std > 0), 0.0))
        prev = by_sensor[channel].shift(1)
        df[f"{prefix}_rate_of_change"] = ((x - prev) / dt_s).where(dt_s > 0)
    t, rh = df["temperature"], df["humidity"]
    df["comfort_index"] = t - 0.55 * (1 - 0.01 * rh) * (t - 14.5)
    df["temp_humidity_interaction"] = t * rh / 100.0
    diff, bound = t - df["temp_rolling_mean"], TREND_THRESHOLD + TOLERANCE
    df["trend_category"] = np.select(
        [t.isna(), diff > bound, diff < -bound], ["unknown", "rising", "falling"], "stable"
    )
    return df[FEATURE_COLUMNS]


# -- the same definitions in Flink SQL -------------------------------------------------------------------------


def _double(x: float) -> str:
    """A DOUBLE literal in Flink SQL (a plain 0.5 would be a DECIMAL)."""
    return f"{x!r}E0" if "e" not in repr(x) else repr(x).replace("e", "E")


def flink_sql(events: str) -> str:
    """A Flink SQL query computing the feature table from the view `events`, in streaming mode.

    `events` holds the `EVENT_COLUMNS` of valid events plus `event_ms` (event time as epoch milliseconds) and
    `proc_time` (a processing-time attribute, which orders each sensor's readings by arrival). Two OVER windows:
    an unbounded one for the previous reading (LAG), then a ROWS window of `ROLLING_WINDOW` readings.
    """
    n = ROLLING_WINDOW - 1
    lags = ",\n        ".join(f"LAG({c}) OVER w AS prev_{c}" for c in CHANNELS)
    sums = ",\n        ".join(
        f"AVG({c}) OVER w AS {p}_rolling_mean, AVG({c} * {c}) OVER w AS {p}_mean_sq" for c, p in CHANNELS.items()
    )
    per_channel = []
    for c, p in CHANNELS.items():
        var = f"({p}_mean_sq - {p}_rolling_mean * {p}_rolling_mean)"
        std = f"SQRT(CASE WHEN {var} < {_double(TOLERANCE)} THEN 0E0 ELSE {var} END)"
        per_channel.append(
            f"{p}_rolling_mean, {std} AS {p}_rolling_std,\n"
            f"        CASE WHEN {c} IS NULL THEN CAST(NULL AS DOUBLE) WHEN {std} > 0"
            f" THEN ({c} - {p}_rolling_mean) / {std} ELSE 0E0 END AS {p}_zscore"
        )
    rates = ",\n        ".join(
        f"CASE WHEN event_ms - prev_event_ms > 0 THEN ({c} - prev_{c}) / (CAST(event_ms - prev_event_ms AS DOUBLE)"
        f" / 1000E0) END AS {p}_rate_of_change"
        for c, p in CHANNELS.items()
    )
    channel_sql = ",\n        ".join(per_channel)
    lo, hi = BUSINESS_HOURS
    diff, bound = "temperature - temp_rolling_mean", _double(TREND_THRESHOLD + TOLERANCE)
    return f"""
SELECT
        sensor_id, event_time, temperature, humidity, pressure, is_anomaly, anomaly_type,
        building, `floor`, room, device_model, firmware_version, battery_level,
        CAST(HOUR(event_time) AS INT) AS `hour`,
        CAST(MOD(DAYOFWEEK(event_time) + 5, 7) AS INT) AS day_of_week,
        DAYOFWEEK(event_time) IN (1, 7) AS is_weekend,
        DAYOFWEEK(event_time) NOT IN (1, 7) AND HOUR(event_time) >= {lo} AND HOUR(event_time) < {hi}
            AS is_business_hours,
        {channel_sql},
        {rates},
        temperature - 0.55E0 * (1E0 - 0.01E0 * humidity) * (temperature - 14.5E0) AS comfort_index,
        temperature * humidity / 100E0 AS temp_humidity_interaction,
        CASE WHEN temperature IS NULL THEN 'unknown' WHEN {diff} > {bound} THEN 'rising'
             WHEN {diff} < -{bound} THEN 'falling' ELSE 'stable' END AS trend_category
FROM (
    SELECT *,
        {sums}
    FROM (
        SELECT *,
        {lags},
        LAG(event_ms) OVER w AS prev_event_ms
        FROM {events}
        WINDOW w AS (PARTITION BY sensor_id ORDER BY proc_time)
    )
    WINDOW w AS (PARTITION BY sensor_id ORDER BY proc_time ROWS BETWEEN {n} PRECEDING AND CURRENT ROW)
)"""
