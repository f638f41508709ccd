"""One run's batch: producing it, and finding it again in the archive and the dead-letter topic.

Identifying one run's data. The batch is generated with its event time starting at the run's start, and the
producer's Kafka offsets are bracketed (the end offset of every partition before and after producing). Every offset
in that range ends up either in the raw archive (which records each row's Kafka partition and offset) or in the
dead-letter topic (which records the same): that is the row-count balance the validation checks.

Safe to retry: `generate_batch` writes the manifest once the batch is acknowledged and returns it on a retry
instead of producing again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sensorops import config
from sensorops.pipeline import store
from sensorops.pipeline.context import RunContext
from sensorops.pipeline.outputs import ArchiveCounts, BatchManifest

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

MANIFEST = "batch.json"
RAW_COLUMNS = ["sensor_id", "event_time", "payload", "kafka_partition", "kafka_offset"]
DEAD_LETTER_COLUMNS = ["reason", "kafka_partition", "kafka_offset"]


def corrupt(values: list[bytes], rate: float, seed: int) -> list[int]:
    """Truncate a seeded random `rate` share of the JSON payloads in place (dead letters); return their indexes."""
    import numpy as np

    n_bad = round(len(values) * rate)
    if n_bad == 0:
        return []
    chosen = sorted(np.random.default_rng([seed, 404]).choice(len(values), size=n_bad, replace=False).tolist())
    for i in chosen:
        values[i] = values[i][: len(values[i]) // 2]
    return chosen


def generate_batch(ctx: RunContext) -> BatchManifest:
    """Produce the run's bounded batch to the sensor topic; return its manifest (offsets, counts, time range)."""
    import pandas as pd

    from sensorops import events, generator, kafka_io, stream

    existing = store.read_json(ctx.key(MANIFEST))
    if existing:
        manifest = BatchManifest.from_xcom(existing)
        log.info(
            "batch of run %s was already produced (%d events); not producing again", ctx.run_id, manifest.acknowledged
        )
        return manifest
    p = ctx.params
    start = stream.batch_start(p.duration_s)  # the batch ends now: none of it is late
    frame = generator.simulate(
        n_sensors=p.n_sensors,
        duration_s=p.duration_s,
        interval_s=p.interval_s,
        anomaly_rate=p.anomaly_rate,
        seed=p.seed,
        start=start,
    )
    keys, values = events.serialize(frame)
    bad = corrupt(values, p.bad_rate, p.seed)
    valid = frame.drop(index=frame.index[bad])
    dead_letters_before = kafka_io.end_offsets(config.DEAD_LETTER_TOPIC)
    before = kafka_io.end_offsets(config.SENSOR_TOPIC)
    report = kafka_io.produce((keys, values), config.SENSOR_TOPIC)
    after = kafka_io.end_offsets(config.SENSOR_TOPIC)
    offsets = {part: (before.get(part, 0), end) for part, end in after.items() if end > before.get(part, 0)}
    times = pd.to_datetime(frame["timestamp"], utc=True)
    manifest = BatchManifest(
        run_id=ctx.run_id,
        topic=config.SENSOR_TOPIC,
        start=times.min().isoformat(),
        end=times.max().isoformat(),
        events=len(frame),
        bad=len(bad),
        acknowledged=report.acknowledged,
        produce_seconds=round(report.seconds, 3),
        offsets=offsets,
        dead_letter_offsets=dead_letters_before,
        anomaly_rate=float(valid["is_anomaly"].mean()) if len(valid) else 0.0,
        anomaly_types={str(k): int(v) for k, v in valid["anomaly_type"].astype(str).value_counts().items()},
        offset_range=sum(end - first for first, end in offsets.values()),
    )
    store.put(ctx.key(MANIFEST), json.dumps(manifest.to_xcom(), indent=2).encode(), "application/json")
    log.info(
        "produced %d events (%d broken on purpose) from %s to %s",
        report.acknowledged,
        len(bad),
        manifest.start,
        manifest.end,
    )
    return manifest


def in_batch(frame: pd.DataFrame, batch: BatchManifest) -> np.ndarray:
    """Boolean mask of the rows whose `kafka_partition` and `kafka_offset` fall in the batch's offset ranges."""
    import numpy as np

    mask = np.zeros(len(frame), dtype=bool)
    partition, offset = frame["kafka_partition"], frame["kafka_offset"]
    for part, (first, end) in batch.offsets.items():
        mask |= ((partition == part) & (offset >= first) & (offset < end)).to_numpy(dtype=bool)
    return mask


@dataclass(frozen=True)
class BatchRows:
    """The batch's rows in the archive: raw rows (by Kafka offset), feature rows, the feature partitions read."""

    raw: pd.DataFrame
    features: pd.DataFrame
    """In event-time order, as `training.time_split` needs them."""
    partitions: list[str]


@dataclass(frozen=True)
class Accounting:
    """Where the batch went: its rows in the archive and its dead letters."""

    rows: BatchRows
    dead_letters: pd.DataFrame
    """One row per dead letter of the batch: `DEAD_LETTER_COLUMNS`."""

    @property
    def counts(self) -> ArchiveCounts:
        raw = self.rows.raw
        return ArchiveCounts(
            archived=len(raw),
            dead_letters=len(self.dead_letters),
            duplicates=int(raw.duplicated(["kafka_partition", "kafka_offset"]).sum()),
            feature_rows=len(self.rows.features),
        )


def batch_rows(batch: BatchManifest) -> BatchRows:
    """The batch's rows in the raw archive and in the features archive, in the hours its event time covers.

    The features archive has no Kafka offsets: feature rows are matched to the batch's raw rows on
    (sensor_id, event_time), which leaves out rows that other producers wrote into the same hours.
    """
    from sensorops import archive, features

    raw = archive.read(archive.RAW, batch.start, batch.end, columns=RAW_COLUMNS).frame
    mine = raw[in_batch(raw, batch)]
    found = archive.read(archive.FEATURES, batch.start, batch.end, columns=features.FEATURE_COLUMNS)
    feats = found.frame
    if len(feats) and len(mine):
        keys = mine[["sensor_id", "event_time"]].drop_duplicates()
        feats = feats.merge(keys, on=["sensor_id", "event_time"], how="inner")
    else:
        feats = feats.head(0)
    feats = feats[[c for c in features.FEATURE_COLUMNS if c in feats]]  # `hour`, restored, comes last otherwise
    feats = feats.sort_values("event_time", kind="stable").reset_index(drop=True)
    return BatchRows(mine.reset_index(drop=True), feats, found.partitions)


def dead_letters(batch: BatchManifest, timeout_s: float = 15.0) -> pd.DataFrame:
    """Committed dead letters written since the batch started whose source offsets are in the batch's range."""
    import pandas as pd

    from sensorops import kafka_io

    letters = []
    if batch.dead_letter_offsets:
        letters = kafka_io.read(
            config.DEAD_LETTER_TOPIC, start=batch.dead_letter_offsets, committed_only=True, timeout_s=timeout_s
        )
    frame = pd.DataFrame.from_records([x for x in letters if isinstance(x, dict)], columns=DEAD_LETTER_COLUMNS)
    for column in ("kafka_partition", "kafka_offset"):  # a letter without them belongs to no batch (NaN)
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame[in_batch(frame, batch)].reset_index(drop=True)


def count_archived(batch: BatchManifest) -> Accounting:
    """Find the batch in the raw archive, the features archive and the dead-letter topic."""
    return Accounting(batch_rows(batch), dead_letters(batch))
