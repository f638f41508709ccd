"""Detection quality from flags, per reading and per true anomaly episode: the one definition that training
(evaluation on the test period) and scoring (`scoring.detection`, live and benchmarks) share.

A scores frame has one row per scored reading: `sensor_id`, `event_time` (UTC), `decision` (flagged), and the truth
`is_anomaly` and `anomaly_type` ("none" on normal readings; an anomalous reading without a type counts as "other", as
replayed data labels it).

- Per reading (`pointwise`): a ratio with a zero denominator is 0.0, not NaN: no flags means precision 0, no anomalies
  means recall 0 and missed-alarm rate 0, no normal readings means false-alarm rate 0.
- A true episode (`truth_episodes`) is a maximal run of a sensor's anomalous readings, in event-time order, of one
  type. The generator injects each episode as consecutive readings and puts at least one normal reading between two
  episodes of a sensor, so a run is exactly one injected episode (a test checks the lengths against its bounds).
- An episode is detected (`flag_detection`) when any of its readings is flagged; the delay runs from its first
  reading to the first flagged one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NORMAL_TYPES = frozenset({"", "none", "normal", "nan", "<na>"})
"""anomaly_type values (as lower-case strings) that name no type."""
EPISODE_COLUMNS = ["sensor_id", "anomaly_type", "start", "end", "readings"]
METRICS = ["tp", "fp", "fn", "tn", "precision", "recall", "f1", "false_alarm_rate", "missed_alarm_rate"]


def ratio(num: float, den: float) -> float:
    """num / den, and 0.0 when den is 0."""
    return float(num / den) if den else 0.0


def pointwise(scores: pd.DataFrame) -> dict[str, float]:
    """Counts and rates of flagged readings (`decision`) against the truth (`is_anomaly`), one reading each."""
    truth, flag = scores["is_anomaly"].to_numpy(dtype=bool), scores["decision"].to_numpy(dtype=bool)
    tp, fp = int((truth & flag).sum()), int((~truth & flag).sum())
    fn, tn = int((truth & ~flag).sum()), int((~truth & ~flag).sum())
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    rates = [precision, recall, ratio(2 * precision * recall, precision + recall), ratio(fp, fp + tn)]
    return dict(zip(METRICS, [tp, fp, fn, tn, *rates, ratio(fn, fn + tp)]))


def ordered(scores: pd.DataFrame) -> pd.DataFrame:
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


def episodes(readings: pd.DataFrame) -> pd.DataFrame:
    """The episodes of `ordered` readings, indexed by `run`."""
    groups = readings.groupby("run")
    return groups.agg(
        sensor_id=("sensor_id", "first"),
        anomaly_type=("anomaly_type", "first"),
        start=("event_time", "min"),
        end=("event_time", "max"),
        readings=("event_time", "size"),
    )


def truth_episodes(scores: pd.DataFrame) -> pd.DataFrame:
    """The true anomaly episodes, one row each: sensor_id, anomaly_type, start, end (event times), readings."""
    return episodes(ordered(scores)).reset_index(drop=True)[EPISODE_COLUMNS]


def with_detection(table: pd.DataFrame, first: pd.Series) -> pd.DataFrame:
    """Episodes (`episodes`) with `detected` and `delay_s`, given the first detection time per run (NaT: missed)."""
    first = first.reindex(table.index)
    out = table.assign(detected=first.notna(), delay_s=(first - table["start"]).dt.total_seconds())
    return out.reset_index(drop=True)[EPISODE_COLUMNS + ["detected", "delay_s"]]


def flag_detection(scores: pd.DataFrame, flags: pd.Series | np.ndarray | None = None) -> pd.DataFrame:
    """Per true episode: detected (any of its readings flagged), and the delay in seconds (NaN if missed).
    `flags`: a boolean per reading in the order of `scores` (default `scores["decision"]`)."""
    flags = scores["decision"] if flags is None else flags
    readings = ordered(scores.assign(_flag=np.asarray(flags, dtype=bool)))
    first = readings["event_time"].where(readings["_flag"]).groupby(readings["run"]).min()
    return with_detection(episodes(readings), first)


def detection_summary(detection: pd.DataFrame) -> pd.DataFrame:
    """Per anomaly type, from a detection table: episodes, detected, detection_rate, and the median and 90th
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
