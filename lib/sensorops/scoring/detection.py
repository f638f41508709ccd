"""How well the scores find the anomalies: per reading, per true episode, per alert and per model version.

A scores frame has one row per scored reading: `sensor_id`, `event_time` (UTC), `score`, `decision` (flagged),
`model_version`, and the generator's truth `is_anomaly` and `anomaly_type` ("none" on normal readings; an anomalous
reading without a type counts as "other", as replayed data labels it).

- Per reading (`pointwise`), per true episode (`truth_episodes`, detection by flags) and per anomaly type
  (`detection_summary`): `training.episodes`, shared with training and re-exported here.
- Given alert episodes instead of flags (`event_detection`), an episode is detected when an alert of its sensor
  overlaps it (first to last flagged reading), and the delay runs to the alert's opening (0 if it opened earlier).
- False alarms (`false_alarm_episodes`): alert episodes whose span contains no anomalous reading of their sensor, per
  sensor-hour of data: hours = sum over sensors of (last - first event_time) / 3600.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sensorops.scoring.alerts import episode_table, event_ms
from sensorops.training.episodes import (
    EPISODE_COLUMNS,
    METRICS,
    NORMAL_TYPES,
    detection_summary,
    episodes,
    flag_detection,
    ordered,
    pointwise,
    ratio,
    truth_episodes,
    with_detection,
)

__all__ = [
    "EPISODE_COLUMNS",
    "METRICS",
    "NORMAL_TYPES",
    "by_version",
    "detection_summary",
    "event_detection",
    "false_alarm_episodes",
    "pointwise",
    "truth_episodes",
]


def by_version(scores: pd.DataFrame) -> pd.DataFrame:
    """`pointwise` per model version, one row each, with the number of readings it scored."""
    rows = {str(v): {"readings": len(g), **pointwise(g)} for v, g in scores.groupby("model_version", observed=True)}
    index = pd.Index(list(rows), name="model_version")
    return pd.DataFrame(list(rows.values()), index=index, columns=["readings", *METRICS])


def _first_alert(table: pd.DataFrame, alerts: pd.DataFrame) -> pd.Series:
    """Per true episode (index of `table`), when the first overlapping alert episode opened, not before its start."""
    columns = ["sensor_id", "first_reading_ms", "last_reading_ms", "opened_at_ms"]
    spans = episode_table(alerts)[columns].astype({"sensor_id": str})
    pairs = table.reset_index().merge(spans, on="sensor_id")
    start, end = event_ms(pairs["start"]), event_ms(pairs["end"])
    hit = (pairs["first_reading_ms"].to_numpy() <= end) & (pairs["last_reading_ms"].to_numpy() >= start)
    opened = pd.Series(np.maximum(pairs["opened_at_ms"].to_numpy(), start)[hit], index=pairs["run"][hit])
    return pd.to_datetime(opened.groupby(level=0).min(), unit="ms", utc=True)


def event_detection(scores: pd.DataFrame, detections: pd.Series | pd.DataFrame | None = None) -> pd.DataFrame:
    """Per true episode: detected, and the delay in seconds (NaN if missed). `detections`: a flag per reading (booleans
    in the order of `scores`; by default `scores["decision"]`), or alert changes or episodes (`scoring.alerts`)."""
    if not isinstance(detections, pd.DataFrame):
        return flag_detection(scores, detections)
    table = episodes(ordered(scores))
    return with_detection(table, _first_alert(table, detections))


def false_alarm_episodes(alert_episodes: pd.DataFrame, scores: pd.DataFrame) -> float:
    """Alert episodes (changes or `episode_table`) that overlap no anomalous reading, per sensor-hour of `scores`
    (0.0 when the scores span no time)."""
    readings = ordered(scores)
    times = readings.groupby("sensor_id")["event_time"]
    hours = (times.max() - times.min()).dt.total_seconds().sum() / 3600
    anomalous = readings[readings["is_anomaly"]]
    truth = {s: event_ms(t) for s, t in anomalous.groupby("sensor_id")["event_time"]}
    spans = episode_table(alert_episodes)[["sensor_id", "first_reading_ms", "last_reading_ms"]]
    false = 0
    for sensor, first, last in spans.itertuples(index=False):
        t = truth.get(str(sensor), np.empty(0, dtype="int64"))
        i = np.searchsorted(t, first)
        false += bool(i == len(t) or t[i] > last)
    return ratio(false, hours)
