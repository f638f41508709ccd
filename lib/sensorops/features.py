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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sensorops import events, profiles
from sensorops.errors import UserError
from sensorops.events import EVENT_COLUMNS, events_frame
from sensorops.profiles import Profile

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


# -- any profile's features: every channel, a short and a long window, lags ----------------------------------------

LONG_WINDOW = 60
"""Readings per sensor in the long window of a profile's features: a slow fault (a drift, a valve closed over a
minute) carries the short window along with it, not this one. On SKAB (one reading a second) 60 did better than 120
and 300 for every supervised model (F1 0.84 against 0.82 and 0.70 for the random forest, split per sensor)."""
LAGS = (10, 60)
"""`<c>_delta_<k>` is the reading minus the sensor's reading `k` arrivals earlier: the change over that span."""
RELATIVE_TOLERANCE = 1e-9
"""A profile's channels come in any unit (vibration RMS in g varies by 1e-7 squared units, pressure in Pa by 1e4),
so a variance below this share of mean(x^2) counts as 0, not one below `TOLERANCE`."""


@dataclass(frozen=True)
class FeatureSet:
    """The feature table of a profile, in pandas (`compute`) and in Flink SQL (`flink_sql`), from one definition.

    The default profile's is exactly the table above (`FEATURE_COLUMNS`, `compute_features`, `flink_sql`). Any other
    profile's has the event's columns (`sensor_id`, `event_time`, one per channel, `is_anomaly`, `anomaly_type`)
    and, per channel `c`, in arrival order per sensor as above:

    - `c_rolling_mean`, `c_rolling_std`, `c_zscore` over the last `window` readings, and `c_long_mean`,
      `c_long_std`, `c_long_zscore` over the last `long_window` (zero variance below `RELATIVE_TOLERANCE`);
    - `c_rate_of_change` per second, as above;
    - `c_delta_<k>` for each of `lags`: c minus the sensor's reading k arrivals earlier (null before it has one).

    No calendar columns: a recorded data set's hour says when someone ran the test rig, not how the sensor behaves.
    `detrend` names channels whose level drifts while the machine is fine (a motor's temperature, which falls from
    record to record on SKAB): their features are computed all the same, but models see only their deviations.
    """

    profile: Profile
    window: int = ROLLING_WINDOW
    long_window: int = LONG_WINDOW
    lags: tuple[int, ...] = LAGS
    detrend: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.window <= self.long_window or any(k < 1 for k in self.lags):
            got = f"window {self.window}, long_window {self.long_window}, lags {list(self.lags)}"
            raise UserError(f"profile {self.profile.name}: features need 1 <= window <= long_window, lags >= 1; {got}")
        unknown = sorted(set(self.detrend) - set(self.profile.channel_names))
        if unknown or (self.detrend and self.profile.is_default):
            raise UserError(f"profile {self.profile.name}: detrend names no channel of it: {unknown or self.detrend}")
        if len(set(self.columns)) != len(self.columns):
            raise UserError(f"profile {self.profile.name}: a channel name repeats a feature name of another channel")

    @property
    def channels(self) -> dict[str, str]:
        """Each channel and the prefix of its feature columns."""
        return dict(CHANNELS) if self.profile.is_default else {c: c for c in self.profile.channel_names}

    @property
    def event_columns(self) -> list[str]:
        if self.profile.is_default:
            return list(EVENT_COLUMNS)
        return ["sensor_id", "event_time", *self.profile.channel_names, "is_anomaly", "anomaly_type"]

    def channel_features(self, prefix: str) -> list[str]:
        """The feature columns of one channel (not for the default profile)."""
        stats = ("rolling_mean", "rolling_std", "zscore", "long_mean", "long_std", "long_zscore", "rate_of_change")
        return [f"{prefix}_{s}" for s in stats] + [f"{prefix}_delta_{k}" for k in self.lags]

    @property
    def columns(self) -> list[str]:
        """The columns of the feature table, in order."""
        if self.profile.is_default:
            return list(FEATURE_COLUMNS)
        return self.event_columns + [f for c in self.profile.channel_names for f in self.channel_features(c)]

    @property
    def numeric(self) -> list[str]:
        """Numeric columns a model can take as they are."""
        if self.profile.is_default:
            return list(NUMERIC_FEATURES)
        return [c for c in self.columns if c not in ("sensor_id", "event_time", "is_anomaly", "anomaly_type")]

    @property
    def levels(self) -> list[str]:
        """The columns that carry a channel's level (the reading, its means): what a slow drift of the level moves
        although the machine is fine."""
        if self.profile.is_default:
            return [*CHANNELS, *(f"{p}_rolling_mean" for p in CHANNELS.values())]
        return [f"{c}{s}" for c in self.profile.channel_names for s in ("", "_rolling_mean", "_long_mean")]

    @property
    def smoothed(self) -> list[str]:
        """The window statistics (the means, the short window's standard deviation, the long z-score): at one
        reading a second the readings themselves, and what is computed from one or two of them (z-score, rate,
        deltas), are noisy. (With the long window's standard deviation too, PCA's F1 on SKAB fell from 0.71 to 0.63.)"""
        if self.profile.is_default:
            return [f"{p}_{s}" for p in CHANNELS.values() for s in ("rolling_mean", "rolling_std")]
        stats = ("rolling_mean", "rolling_std", "long_mean", "long_zscore")
        return [f"{c}_{s}" for c in self.profile.channel_names for s in stats]

    @property
    def drifting(self) -> list[str]:
        """The `levels` of the channels in `detrend`."""
        return [f"{c}{s}" for c in self.detrend for s in ("", "_rolling_mean", "_long_mean")]

    def compute(self, events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
        """The feature table of events given in arrival order: event dicts as on the wire, or a DataFrame with
        `timestamp` (as `replay.read_profile` returns) or `event_time`. One row per event, in the input order."""
        if self.profile.is_default:
            if isinstance(events, pd.DataFrame) and "event_time" not in events and "timestamp" in events:
                wire = {"timestamp": "event_time", "model": "device_model"}  # replay's columns: `events.COLUMNS`
                events = events.rename(columns=wire)[EVENT_COLUMNS]
            return compute_features(events)
        df = self._events(events)
        ts, keys = df["event_time"], df["sensor_id"]
        by_sensor = df.groupby("sensor_id", sort=False)
        dt_s = (ts - by_sensor["event_time"].shift(1)).dt.total_seconds()
        out = {}
        for c in self.profile.channel_names:
            x = df[c]
            for label, n in (("rolling", self.window), ("long", self.long_window)):
                mean, std = _window_stats(x, keys, n)
                zscore = np.where(x.isna(), np.nan, np.where(std > 0, (x - mean) / std.where(std > 0), 0.0))
                out[f"{c}_{label}_mean"], out[f"{c}_{label}_std"] = mean, std
                out[f"{c}_zscore" if label == "rolling" else f"{c}_long_zscore"] = zscore
            out[f"{c}_rate_of_change"] = ((x - by_sensor[c].shift(1)) / dt_s).where(dt_s > 0)
            for k in self.lags:
                out[f"{c}_delta_{k}"] = x - by_sensor[c].shift(k)
        return pd.concat([df, pd.DataFrame(out, index=df.index)], axis=1)[self.columns]

    def _events(self, events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
        frame = events if isinstance(events, pd.DataFrame) else pd.DataFrame(list(events))
        frame = frame.rename(columns={"timestamp": "event_time"}) if "event_time" not in frame else frame
        missing = [c for c in self.event_columns if c not in frame.columns]
        if missing:
            raise UserError(f"the events lack the columns {missing} of profile {self.profile.name}")
        df = frame[self.event_columns].reset_index(drop=True)
        df["event_time"] = pd.to_datetime(df["event_time"], utc=True).astype("datetime64[ms, UTC]")
        df[list(self.profile.channel_names)] = df[list(self.profile.channel_names)].astype("float64")
        return df.assign(is_anomaly=df["is_anomaly"].astype(bool), anomaly_type=df["anomaly_type"].astype(str))

    def flink_sql(self, events: str) -> str:
        """The same table as a Flink SQL query over the view `events` (columns as for `flink_sql` above, with the
        profile's channels): three nested OVER windows, the previous readings (LAG), then the short and the long
        ROWS windows."""
        if self.profile.is_default:
            return flink_sql(events)
        names = self.profile.channel_names
        lags = [f"LAG(`{c}`) OVER w AS `{c}__prev`" for c in names]
        lags += [f"LAG(`{c}`, {k}) OVER w AS `{c}__lag_{k}`" for c in names for k in self.lags]
        levels = {"rolling": self.window, "long": self.long_window}
        sums = {
            label: [
                f"AVG(`{c}`) OVER w AS `{c}_{label}_mean`, AVG(`{c}` * `{c}`) OVER w AS `{c}__{label}_sq`"
                for c in names
            ]
            for label in levels
        }
        selected = [f"`{c}`" for c in self.event_columns]
        for c in names:
            for label in levels:
                mean, var = f"`{c}_{label}_mean`", f"(`{c}__{label}_sq` - `{c}_{label}_mean` * `{c}_{label}_mean`)"
                std = (
                    f"SQRT(CASE WHEN {var} < {_double(RELATIVE_TOLERANCE)} * `{c}__{label}_sq` THEN 0E0 ELSE {var} END)"
                )
                zscore = f"`{c}_zscore`" if label == "rolling" else f"`{c}_long_zscore`"
                selected.append(f"{mean}, {std} AS `{c}_{label}_std`")
                selected.append(
                    f"CASE WHEN `{c}` IS NULL THEN CAST(NULL AS DOUBLE) WHEN {std} > 0 THEN (`{c}` - {mean}) / {std}"
                    f" ELSE 0E0 END AS {zscore}"
                )
            selected.append(
                f"CASE WHEN event_ms - prev_event_ms > 0 THEN (`{c}` - `{c}__prev`) / (CAST(event_ms - prev_event_ms"
                f" AS DOUBLE) / 1000E0) END AS `{c}_rate_of_change`"
            )
            selected += [f"`{c}` - `{c}__lag_{k}` AS `{c}_delta_{k}`" for k in self.lags]
        order = "PARTITION BY sensor_id ORDER BY proc_time"
        sep = ",\n        "
        return f"""
SELECT
        {sep.join(selected)}
FROM (
    SELECT *,
        {sep.join(sums["long"])}
    FROM (
        SELECT *,
            {sep.join(sums["rolling"])}
        FROM (
            SELECT *,
            {sep.join(lags)},
            LAG(event_ms) OVER w AS prev_event_ms
            FROM {events}
            WINDOW w AS ({order})
        )
        WINDOW w AS ({order} ROWS BETWEEN {self.window - 1} PRECEDING AND CURRENT ROW)
    )
    WINDOW w AS ({order} ROWS BETWEEN {self.long_window - 1} PRECEDING AND CURRENT ROW)
)"""


def _window_stats(x: pd.Series, keys: pd.Series, n: int) -> tuple[pd.Series, pd.Series]:
    """Mean and population standard deviation of each sensor's last `n` non-null values, the current one included
    (a variance below `RELATIVE_TOLERANCE` of mean(x^2) is 0)."""

    def mean_of(values: pd.Series) -> pd.Series:
        rolled = values.groupby(keys, sort=False).rolling(n, min_periods=1).mean()
        return rolled.reset_index(level=0, drop=True).sort_index()

    mean, mean_sq = mean_of(x), mean_of(x * x)
    var = mean_sq - mean * mean
    return mean, np.sqrt(var.mask(var < RELATIVE_TOLERANCE * mean_sq, 0.0))


def for_profile(profile: Profile | None = None) -> FeatureSet:
    """The feature set of `profile` (default: the building-climate profile). A profile file may set the windows and
    lags under `features`, and the channels whose levels drift (`{window: 10, long_window: 60, lags: [10, 60],
    detrend: [temperature]}`); the default profile's are fixed."""
    profile = profile or profiles.default()
    options = profile.extra.get("features") or {}
    where = f"profile {profile.name}: features"
    if not isinstance(options, dict) or set(options) - {"window", "long_window", "lags", "detrend"}:
        raise UserError(f"{where} takes window, long_window, lags and detrend, got {options!r}")
    if options and profile.is_default:
        raise UserError(f"{where}: the default profile's features are fixed")
    lags = options.get("lags", LAGS)
    numbers = [options.get("window", ROLLING_WINDOW), options.get("long_window", LONG_WINDOW)]
    if not isinstance(lags, list | tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in [*numbers, *lags]
    ):
        raise UserError(f"{where}: window, long_window and each lag are whole numbers of readings, got {options!r}")
    detrend = options.get("detrend") or []
    if not isinstance(detrend, list) or not all(isinstance(c, str) for c in detrend):
        raise UserError(f"{where}: detrend is a list of channel names, got {detrend!r}")
    return FeatureSet(profile, numbers[0], numbers[1], tuple(lags), tuple(detrend))
