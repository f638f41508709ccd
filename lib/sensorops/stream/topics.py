"""Feeding and reading the job's topics: where a new batch's event time should begin, feature rows as a frame."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sensorops import config, events, features, kafka_io


def batch_start(duration_s: float, topic: str = config.SENSOR_TOPIC, tail: int = 200) -> pd.Timestamp:
    """Event time at which a new batch of `duration_s` should begin so that none of it is late.

    Normally the batch ends now. If the topic already holds later event times (a batch produced ahead of the clock,
    or one that ended now a moment ago), the job's watermark is past "now minus the duration": the batch then begins
    just after the newest event time among about the last `tail` records of the topic.
    """
    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=duration_s)
    try:
        recent = kafka_io.records(topic, last=tail, timeout_s=10)
        decoded = [events.read_event(r.value)[1] for r in recent]
    except kafka_io.MissingTopic:
        return start
    newest = max((e["event_ms"] for e in decoded if e is not None), default=None)  # dead letters move no watermark
    if newest is None:
        return start
    return max(start, pd.Timestamp(newest, unit="ms", tz="UTC").ceil("s") + pd.Timedelta(seconds=1))


def features_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Feature rows read from the features topic as a DataFrame with the dtypes of `compute_features`."""
    frame = pd.DataFrame(rows).reindex(columns=features.FEATURE_COLUMNS)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    return frame
