"""What drift is measured on: a recent window of the feature archive, and the reference it is compared with.

The reference is the champion's training data, found through the registry: the champion version's `run_id` tag
names the run that trained it, whose `lineage.json` (written by `registry.log_session`) lists the archive partitions
it read and the training period (`train_from` .. `train_to`); those rows are read again from the archive. Without a
champion, or with partitions since deleted, the caller names an earlier range of the same archive instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow.fs as pafs

from sensorops import archive, registry, training
from sensorops.errors import UserError
from sensorops.monitoring.drift import fleet_relative

log = logging.getLogger(__name__)

MAX_REFERENCE_ROWS = 200_000
"""A larger reference is sampled down (seeded): PSI and KS move by less than 0.01 beyond this."""


@dataclass(frozen=True)
class Sample:
    """Rows to compare (with the fleet-relative channels added) and where they came from."""

    frame: pd.DataFrame
    source: str
    start: pd.Timestamp
    end: pd.Timestamp


def to_utc(value: str | datetime | pd.Timestamp) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise UserError(f"not a timestamp: {value!r} (expected ISO-8601, e.g. 2026-11-27T09:30)") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def read_range(
    location: str,
    start: str | datetime | pd.Timestamp,
    end: str | datetime | pd.Timestamp,
    *,
    max_rows: int | None = None,
    seed: int = 0,
    filesystem: pafs.FileSystem | None = None,
) -> Sample:
    """Rows of `location` with `start <= event_time <= end` (read by hourly partition, then cut to the instant)."""
    first, last = to_utc(start), to_utc(end)
    if last < first:
        raise UserError(f"the range ends ({last}) before it starts ({first})")
    data = archive.read(location, first.to_pydatetime(), last.to_pydatetime(), filesystem=filesystem)
    frame = data.frame
    if not frame.empty:
        times = frame[training.TIME_COLUMN]
        frame = frame[(times >= first) & (times <= last)]
    if frame.empty:
        raise UserError(f"no archived rows in {location} from {first} to {last} (is the stream job archiving?)")
    frame = fleet_relative(frame)  # before sampling: the fleet median needs every sensor of each minute
    if max_rows and len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed).sort_values(training.TIME_COLUMN, kind="stable")
    log.info("%d rows of %s from %s to %s", len(frame), location, first, last)
    return Sample(frame.reset_index(drop=True), data.source or location, first, last)


def recent_window(
    location: str,
    minutes: float,
    end: str | datetime | pd.Timestamp | None = None,
    *,
    filesystem: pafs.FileSystem | None = None,
) -> Sample:
    """The last `minutes` of event time up to `end` (default now)."""
    if not minutes > 0:
        raise UserError(f"the window must be a positive number of minutes, got {minutes}")
    last = to_utc(end) if end is not None else pd.Timestamp.now(tz="UTC")
    return read_range(location, last - pd.Timedelta(minutes=minutes), last, filesystem=filesystem)


@dataclass(frozen=True)
class Champion:
    """Where the champion's training data is: the archive location and the training period."""

    version: str
    run_id: str
    location: str
    train_from: pd.Timestamp
    train_to: pd.Timestamp


def champion_training_range(model_name: str = registry.MODEL_NAME) -> Champion:
    """The champion's training period and archive location, from its run's `lineage.json`."""
    version = registry.current_champion(model_name)
    if version is None:
        raise UserError(
            f"{model_name} has no champion to compare with; train one (`sensorops train`) or give a reference range "
            "with --reference-start/--reference-end"
        )
    run_id = registry.client().get_model_version(model_name, version).run_id
    lineage = registry.lineage_of(run_id)
    partitions = lineage.get("partitions") or []
    if not partitions or "train_from" not in lineage:
        raise UserError(
            f"the run {run_id} of {model_name} version {version} records no archive partitions (trained in memory?); "
            "give a reference range with --reference-start/--reference-end"
        )
    location = partitions[0].rsplit("/dt=", 1)[0]
    return Champion(version, run_id, location, to_utc(lineage["train_from"]), to_utc(lineage["train_to"]))
