"""How well the scores find the anomalies: per reading, per true episode, per alert and per model version.

A scores frame has one row per scored reading: `sensor_id`, `event_time` (UTC), `score`, `decision` (flagged),
`model_version`, and the generator's truth `is_anomaly` and `anomaly_type` ("none" on normal readings; an anomalous
reading without a type counts as "other", as replayed data labels it).

- Per reading (`pointwise`): a ratio with a zero denominator is 0.0, not NaN: no flags means precision 0, no anomalies
  means recall 0 and missed-alarm rate 0, no normal readings means false-alarm rate 0.
- A true episode (`truth_episodes`) is a maximal run of a sensor's anomalous readings, in event-time order, of one
  type. The generator injects each episode as consecutive readings and puts at least one normal reading between two
  episodes of a sensor, so a run is exactly one injected episode (a test checks the lengths against its bounds).
- An episode is detected (`event_detection`) when any of its readings is flagged; the delay runs from its first
  reading to the first flagged one. Given alert episodes instead of flags, it is detected when an alert of its sensor
  overlaps it (first to last flagged reading), and the delay runs to the alert's opening (0 if it opened earlier).
- False alarms (`false_alarm_episodes`): alert episodes whose span contains no anomalous reading of their sensor, per
  sensor-hour of data: hours = sum over sensors of (last - first event_time) / 3600.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sensorops.scoring.alerts import episode_table, event_ms

NORMAL_TYPES = frozenset({"", "none", "normal", "nan", "<na>"})
"""anomaly_type values (as lower-case strings) that name no type."""
EPISODE_COLUMNS = ["sensor_id", "anomaly_type", "start", "end", "readings"]
METRICS = ["tp", "fp", "fn", "tn", "precision", "recall", "f1", "false_alarm_rate", "missed_alarm_rate"]


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def pointwise(scores: pd.DataFrame) -> dict[str, float]:
    """Counts and rates of flagged readings (`decision`) against the truth (`is_anomaly`), one reading each."""
    truth, flag = scores["is_anomaly"].to_numpy(dtype=bool), scores["decision"].to_numpy(dtype=bool)
    tp, fp = int((truth & flag).sum()), int((~truth & flag).sum())
    fn, tn = int((truth & ~flag).sum()), int((~truth & ~flag).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    rates = [precision, recall, _ratio(2 * precision * recall, precision + recall), _ratio(fp, fp + tn)]
    return dict(zip(METRICS, [tp, fp, fn, tn, *rates, _ratio(fn, fn + tp)]))


def by_version(scores: pd.DataFrame) -> pd.DataFrame:
    """`pointwise` per model version, one row each, with the number of readings it scored."""
    rows = {str(v): {"readings": len(g), **pointwise(g)} for v, g in scores.groupby("model_version", observed=True)}
    index = pd.Index(list(rows), name="model_version")
    return pd.DataFrame(list(rows.values()), index=index, columns=["readings", *METRICS])


def _ordered(scores: pd.DataFrame) -> pd.DataFrame:
    """Readings sorted per sensor by event time (stably), with string ids, UTC times, a type and an episode number
    (`run`, NaN on normal readings)."""
    kind = scores["anomaly_type"].astype(str).str.strip().str.lower()
    anomalous = scores["is_anomaly"].to_numpy(dtype=bool)
    frame = scores.assign(
        sensor_id=scores["sensor_id"].astype(str),
        event_time=pd.to_datetime(scores["event_time"], utc=True),
        anomaly_type=np.where(anomalous, kind.where(~kind.isin(NORMAL_TYPES), "other"), "none"),
        is_anomaly=anomalous,
    ).sort_values(["sensor_id", "event_time"], kind="stable")
    keys = frame[["sensor_id", "anomaly_type", "is_anomaly"]]
    starts = frame["is_anomaly"] & ~keys.eq(keys.shift()).all(axis=1)
    return frame.assign(run=starts.cumsum().where(frame["is_anomaly"]))


def _episodes(ordered: pd.DataFrame) -> pd.DataFrame:
    groups = ordered.groupby("run")
    return groups.agg(
        sensor_id=("sensor_id", "first"),
        anomaly_type=("anomaly_type", "first"),
        start=("event_time", "min"),
        end=("event_time", "max"),
        readings=("event_time", "size"),
    )


def truth_episodes(scores: pd.DataFrame) -> pd.DataFrame:
    """The true anomaly episodes, one row each: sensor_id, anomaly_type, start, end (event times), readings."""
    return _episodes(_ordered(scores)).reset_index(drop=True)[EPISODE_COLUMNS]


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
    alerts = isinstance(detections, pd.DataFrame)
    flags = scores["decision"] if detections is None or alerts else detections
    ordered = _ordered(scores.assign(_flag=np.asarray(flags, dtype=bool)))
    table = _episodes(ordered)
    if alerts:
        first = _first_alert(table, detections)
    else:
        first = ordered["event_time"].where(ordered["_flag"]).groupby(ordered["run"]).min()
    first = first.reindex(table.index)
    out = table.assign(detected=first.notna(), delay_s=(first - table["start"]).dt.total_seconds())
    return out.reset_index(drop=True)[EPISODE_COLUMNS + ["detected", "delay_s"]]


def detection_summary(detection: pd.DataFrame) -> pd.DataFrame:
    """Per anomaly type, from `event_detection`: episodes, detected, detection_rate, and the median and 90th
    percentile delay in seconds of the detected ones."""
    groups = detection.groupby("anomaly_type", sort=True)
    out = groups.agg(
        episodes=("detected", "size"),
        detected=("detected", "sum"),
        median_delay_s=("delay_s", "median"),
        p90_delay_s=("delay_s", lambda d: d.quantile(0.9)),
    )
    out.insert(2, "detection_rate", out["detected"] / out["episodes"])
    return out


def false_alarm_episodes(alert_episodes: pd.DataFrame, scores: pd.DataFrame) -> float:
    """Alert episodes (changes or `episode_table`) that overlap no anomalous reading, per sensor-hour of `scores`
    (0.0 when the scores span no time)."""
    ordered = _ordered(scores)
    times = ordered.groupby("sensor_id")["event_time"]
    hours = (times.max() - times.min()).dt.total_seconds().sum() / 3600
    anomalous = ordered[ordered["is_anomaly"]]
    truth = {s: event_ms(t) for s, t in anomalous.groupby("sensor_id")["event_time"]}
    spans = episode_table(alert_episodes)[["sensor_id", "first_reading_ms", "last_reading_ms"]]
    false = 0
    for sensor, first, last in spans.itertuples(index=False):
        t = truth.get(str(sensor), np.empty(0, dtype="int64"))
        i = np.searchsorted(t, first)
        false += bool(i == len(t) or t[i] > last)
    return _ratio(false, hours)
