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

Validity (anything else is a dead letter, with one of `DEAD_LETTER_REASONS`): the payload is a JSON object;
`sensor_id` and `timestamp` are present and not null; `sensor_id` is a non-empty string; `timestamp` is a string
`YYYY-MM-DDTHH:MM:SS[.f]Z` naming a real instant after 1970-01-01T00:00:00Z; temperature, humidity and pressure are each a JSON number, null, or
absent. Optional descriptive fields (location, device_info, is_anomaly, anomaly_type) of the wrong type become null.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd

ROLLING_WINDOW = 10
"""Readings per sensor in the rolling window, the current one included."""

BUSINESS_HOURS = (8, 18)
TREND_THRESHOLD = 0.5
"""Degrees C above (below) the rolling mean that make a reading 'rising' ('falling')."""
TOLERANCE = 1e-6
"""Floating-point noise: a smaller variance is 0, and a trend must clear its threshold by this much. (Flink SQL's
ROUND, the other way to absorb noise, goes through BigDecimal and cost the stream job a fifth of its CPU.)"""

CHANNELS = {"temperature": "temp", "humidity": "humidity", "pressure": "pressure"}
"""Measured channels and the prefix of their feature columns."""

DEAD_LETTER_REASONS = ("invalid_json", "missing_field", "wrong_type")
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"

EVENT_COLUMNS = [
    "sensor_id", "event_time", "temperature", "humidity", "pressure", "is_anomaly", "anomaly_type",
    "building", "floor", "room", "device_model", "firmware_version", "battery_level",
]
TEMPORAL_COLUMNS = ["hour", "day_of_week", "is_weekend", "is_business_hours"]
ROLLING_COLUMNS = [
    f"{p}_{s}" for p in CHANNELS.values() for s in ("rolling_mean", "rolling_std", "zscore")
]
RATE_COLUMNS = [f"{p}_rate_of_change" for p in CHANNELS.values()]
DERIVED_COLUMNS = ["comfort_index", "temp_humidity_interaction", "trend_category"]

FEATURE_COLUMNS = EVENT_COLUMNS + TEMPORAL_COLUMNS + ROLLING_COLUMNS + RATE_COLUMNS + DERIVED_COLUMNS
"""The columns of the feature table, in order."""

NUMERIC_FEATURES = (
    ["temperature", "humidity", "pressure", "floor", "battery_level", "hour", "day_of_week"]
    + ROLLING_COLUMNS + RATE_COLUMNS + ["comfort_index", "temp_humidity_interaction"]
)
"""Numeric columns a model can take as they are (booleans and categories need encoding)."""

_TS_RE = re.compile(TIMESTAMP_PATTERN)


_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)


def epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 UTC timestamp string (truncated to milliseconds); None if it is not one."""
    if not isinstance(value, str) or not _TS_RE.match(value):
        return None
    try:  # the pattern fixed every digit's position; datetime() rejects days that do not exist
        base = datetime(int(value[:4]), int(value[5:7]), int(value[8:10]),
                        int(value[11:13]), int(value[14:16]), int(value[17:19]))  # fmt: skip
    except ValueError:
        return None
    frac = value[20:-1]
    return (base - _EPOCH) // _ONE_MS + (int((frac + "000")[:3]) if frac else 0)


def parse_timestamp(value: Any) -> pd.Timestamp | None:
    """The instant an ISO-8601 UTC timestamp names, truncated to milliseconds; None if it is not one."""
    ms = epoch_ms(value)
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _invalid_reason(obj: Any) -> str | None:
    """Why a decoded JSON value is not a valid event (one of `DEAD_LETTER_REASONS`), or None."""
    if not isinstance(obj, dict):
        return "invalid_json"
    if obj.get("sensor_id") is None or obj.get("timestamp") is None:
        return "missing_field"
    sensor_id = obj["sensor_id"]
    if not isinstance(sensor_id, str) or not sensor_id:
        return "wrong_type"
    ms = epoch_ms(obj["timestamp"])
    if ms is None or ms <= 0:
        return "wrong_type"
    for channel in CHANNELS:
        value = obj.get(channel)
        if value is not None and not _is_number(value):
            return "wrong_type"
    return None


def read_event(payload: bytes | str | None) -> tuple[str | None, dict[str, Any] | None]:
    """Decode and check one raw Kafka value, parsing it once: (dead-letter reason, None) or (None, flat event).

    The flat event has `EVENT_COLUMNS`, except `event_ms` (epoch milliseconds) in place of `event_time`.
    The stream job calls this for every record (as a Python UDF); batch code calls it through `split_payloads`.
    """
    try:
        obj = orjson.loads(payload)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return "invalid_json", None
    reason = _invalid_reason(obj)
    return (reason, None) if reason else (None, _flat_event(obj))


def dead_letter_reason(payload: bytes | str | None) -> str | None:
    """Why a raw Kafka value is a dead letter (one of `DEAD_LETTER_REASONS`), or None if it is a valid event."""
    return read_event(payload)[0]


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else None


def _scalar(value: Any, kind: type) -> Any:
    """A descriptive field as the stream reads it: the right type or None."""
    if kind is str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        return None
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind is float:
        return float(value) if _is_number(value) else None
    return None


def _flat_event(event: Mapping[str, Any]) -> dict[str, Any]:
    location, device = event.get("location"), event.get("device_info")
    anomaly = event.get("is_anomaly")
    return {
        "sensor_id": event["sensor_id"],
        "event_ms": epoch_ms(event["timestamp"]),
        "temperature": _scalar(event.get("temperature"), float),
        "humidity": _scalar(event.get("humidity"), float),
        "pressure": _scalar(event.get("pressure"), float),
        "is_anomaly": anomaly is True or anomaly == "true",
        "anomaly_type": _scalar(event.get("anomaly_type"), str) or "none",
        "building": _scalar(_field(location, "building"), str),
        "floor": _scalar(_field(location, "floor"), int),
        "room": _scalar(_field(location, "room"), str),
        "device_model": _scalar(_field(device, "model"), str),
        "firmware_version": _scalar(_field(device, "firmware_version"), str),
        "battery_level": _scalar(_field(device, "battery_level"), float),
    }


def _with_event_time(row: dict[str, Any]) -> dict[str, Any]:
    row["event_time"] = pd.Timestamp(row.pop("event_ms"), unit="ms", tz="UTC")
    return row


def flatten_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """One valid event (nested, as on the topic) as a flat row of `EVENT_COLUMNS`."""
    return _with_event_time(_flat_event(event))


def split_payloads(payloads: Iterable[bytes | str]) -> tuple[pd.DataFrame, list[tuple[bytes | str, str]]]:
    """Raw Kafka values, in arrival order, as (flat valid events, [(payload, reason)] dead letters)."""
    rows, dead = [], []
    for payload in payloads:
        reason, row = read_event(payload)
        if reason:
            dead.append((payload, reason))
        else:
            rows.append(_with_event_time(row))
    return events_frame(rows), dead


def events_frame(events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Events, nested (as produced) or already flat, as a DataFrame of `EVENT_COLUMNS` with proper dtypes."""
    if isinstance(events, pd.DataFrame):
        records = events.to_dict("records")
    else:
        records = list(events)
    rows = [r if "event_time" in r else flatten_event(r) for r in records]
    frame = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True).astype("datetime64[ms, UTC]")
    for col in ("temperature", "humidity", "pressure", "battery_level"):
        frame[col] = frame[col].astype("float64")
    frame["floor"] = frame["floor"].astype("Int32")
    frame["is_anomaly"] = frame["is_anomaly"].astype(bool)
    return frame


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
    df["is_business_hours"] = (
        ~df["is_weekend"] & (df["hour"] >= BUSINESS_HOURS[0]) & (df["hour"] < BUSINESS_HOURS[1])
    )
    by_sensor = df.groupby("sensor_id", sort=False)
    dt_s = (ts - by_sensor["event_time"].shift(1)).dt.total_seconds()
    for channel, prefix in CHANNELS.items():
        x = df[channel]
        rolling = by_sensor[channel].rolling(ROLLING_WINDOW, min_periods=1)
        mean = rolling.mean().reset_index(level=0, drop=True).sort_index()
        mean_sq = (
            (x * x).groupby(df["sensor_id"], sort=False).rolling(ROLLING_WINDOW, min_periods=1).mean()
            .reset_index(level=0, drop=True).sort_index()
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
    df["trend_category"] = np.select([t.isna(), diff > bound, diff < -bound], ["unknown", "rising", "falling"], "stable")
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
