"""One run's batch: producing it, and finding it again in the archive and the dead-letter topic.

Identifying one run's data. The batch is generated with its event time starting at the run's start, and the
producer's Kafka offsets are bracketed (the end offset of every partition before and after producing). Every offset
in that range ends up either in the raw archive (which records each row's Kafka partition and offset) or in the
dead-letter topic (which records the same): that is the row-count balance the validation checks.

Once per run, whatever kills an attempt. Before producing, the first attempt stores the run's plan (`batch-plan.json`:
the event time the batch starts at and the end offsets before it); once every event is acknowledged, the manifest
(`batch.json`). A retry returns the manifest if there is one. Otherwise it regenerates the same events from the plan
(seeded, same start: the same bytes), reads back what the topic received since the plan's offsets and produces only
the events not found there, byte for byte. The guarantee: when `generate_batch` succeeds, every event of the run's
batch is in the sensor topic exactly once (assuming a killed attempt's in-flight requests are settled by the time
of the retry, seconds later; acks=all). Each event is matched by its exact bytes, so another producer's events in
the same offsets never count as this batch's.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sensorops import config
from sensorops.errors import ServiceUnavailable
from sensorops.pipeline import faults, store
from sensorops.pipeline.context import RunContext, RunParams
from sensorops.pipeline.outputs import ArchiveCounts, BatchManifest
from sensorops.pipeline.recent import recent_batch
from sensorops.pipeline.xcom import XCom

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

MANIFEST = "batch.json"
PLAN = "batch-plan.json"
DURING, AFTER = "during:generate_batch", "after:generate_batch"
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


@dataclass(frozen=True)
class BatchPlan(XCom):
    """What the first attempt of a run fixed before producing anything (S3: `batch-plan.json`).

    A retry regenerates the same events from it (the generator is seeded and the event time starts at `start`), so
    it can tell, byte for byte, which of them an attempt that died already wrote.
    """

    run_id: str
    start: str
    """ISO event time at which the batch begins."""
    offsets_before: dict[int, int]
    """Partition of the sensor topic -> its end offset before anything of the batch was produced."""
    dead_letter_offsets: dict[int, int]


def missing(values: Sequence[bytes], found: Iterable[bytes]) -> list[int]:
    """Indexes of the batch's `values` that are not among the `found` values (each found value stands for one).

    `found` holds what was written to the topic since the batch's plan; values of other producers match none.
    """
    wanted = set(values)
    left = Counter(v for v in found if v in wanted)
    todo = []
    for i, value in enumerate(values):
        if left[value] > 0:
            left[value] -= 1
        else:
            todo.append(i)
    return todo


def written_since(topic: str, since: Mapping[int, int], timeout_s: float = 60.0) -> list[bytes]:
    """Every value written to `topic` from the offsets `since` to its end now; raises if it cannot read them all."""
    from sensorops import kafka_io

    ends = kafka_io.end_offsets(topic)
    wanted = {part: end for part, end in ends.items() if end > since.get(part, 0)}
    values, last = [], {}
    if wanted:
        start = {part: since.get(part, 0) for part in ends}
        count = sum(end - since.get(part, 0) for part, end in wanted.items())
        # room for what other producers write meanwhile: records stops at the end it sees, not at `ends`
        for r in kafka_io.records(topic, start=start, max_records=count + 100_000, timeout_s=timeout_s):
            if r.offset < wanted.get(r.partition, 0) and r.value is not None:
                values.append(r.value)
                last[r.partition] = max(r.offset, last.get(r.partition, -1))
    short = sorted(part for part, end in wanted.items() if last.get(part, -1) < end - 1)
    if short:
        raise ServiceUnavailable(
            f"could not read back partitions {short} of {topic!r} within {timeout_s:g} s, so cannot tell which "
            "events of the batch an earlier attempt wrote; not producing any (the retry will try again)"
        )
    return values


def _plan(ctx: RunContext) -> BatchPlan:
    """The run's plan: the one an earlier attempt stored, or a new one stored before anything is produced."""
    from sensorops import kafka_io, stream

    stored = store.read_json(ctx.key(PLAN))
    if stored:
        return BatchPlan.from_xcom(stored)
    plan = BatchPlan(
        run_id=ctx.run_id,
        start=stream.batch_start(ctx.params.duration_s).isoformat(),  # the batch ends now: none of it is late
        offsets_before=kafka_io.end_offsets(config.SENSOR_TOPIC),
        dead_letter_offsets=kafka_io.end_offsets(config.DEAD_LETTER_TOPIC),
    )
    store.put(ctx.key(PLAN), json.dumps(plan.to_xcom(), indent=2).encode(), "application/json")
    return plan


def _produce(keys: list[bytes], values: list[bytes], indexes: list[int]) -> tuple[int, float]:
    """Produce the events at `indexes`; (acknowledged, seconds). Raises `DeliveryError` unless all are."""
    from sensorops import kafka_io

    if not indexes:
        return 0, 0.0
    report = kafka_io.produce(([keys[i] for i in indexes], [values[i] for i in indexes]), config.SENSOR_TOPIC)
    return report.acknowledged, report.seconds


def batch_events(p: RunParams, start: str) -> tuple[pd.DataFrame, list[bytes], list[bytes], list[int]]:
    """The run's events, the same bytes every time for the same parameters and start: (frame, keys, values, the
    indexes of the values broken on purpose)."""
    from sensorops import events, generator

    frame = generator.simulate(
        n_sensors=p.n_sensors,
        duration_s=p.duration_s,
        interval_s=p.interval_s,
        anomaly_rate=p.anomaly_rate,
        seed=p.seed,
        start=start,
    )
    keys, values = events.serialize(frame)
    return frame, keys, values, corrupt(values, p.bad_rate, p.seed)


def _keep(ctx: RunContext, manifest: BatchManifest) -> None:
    """Store the run's manifest, which a retry returns."""
    store.put(ctx.key(MANIFEST), json.dumps(manifest.to_xcom(), indent=2).encode(), "application/json")


def generate_batch(ctx: RunContext) -> BatchManifest:
    """Produce the run's bounded batch to the sensor topic; return its manifest (offsets, counts, time range).

    Once per run: a retry returns the stored manifest, or produces only the events an attempt that died left out.
    With `source=recent` nothing is produced: the batch is what the topic received before the run (`recent`).
    """
    import pandas as pd

    from sensorops import kafka_io

    existing = store.read_json(ctx.key(MANIFEST))
    if existing:
        manifest = BatchManifest.from_xcom(existing)
        log.info(
            "batch of run %s was already produced (%d events); not producing again", ctx.run_id, manifest.acknowledged
        )
        return manifest
    if ctx.params.source == "recent":
        manifest = recent_batch(ctx)
        _keep(ctx, manifest)
        return manifest
    p, plan = ctx.params, _plan(ctx)
    frame, keys, values, bad = batch_events(p, plan.start)
    valid = frame.drop(index=frame.index[bad])
    todo = missing(values, written_since(config.SENSOR_TOPIC, plan.offsets_before))
    if len(todo) < len(values):
        log.info("%d of %d events are in the topic already (an earlier attempt)", len(values) - len(todo), len(values))
    half = len(todo) // 2 if p.fault == DURING else 0
    acked_first, seconds_first = _produce(keys, values, todo[:half])
    faults.inject(ctx, DURING)
    acked_rest, seconds = _produce(keys, values, todo[half:])
    faults.inject(ctx, AFTER)
    after = kafka_io.end_offsets(config.SENSOR_TOPIC)
    before = plan.offsets_before
    offsets = {part: (before.get(part, 0), end) for part, end in after.items() if end > before.get(part, 0)}
    times = pd.to_datetime(frame["timestamp"], utc=True)
    manifest = BatchManifest(
        run_id=ctx.run_id,
        topic=config.SENSOR_TOPIC,
        start=times.min().isoformat(),
        end=times.max().isoformat(),
        events=len(frame),
        bad=len(bad),
        acknowledged=len(values) - len(todo) + acked_first + acked_rest,
        produce_seconds=round(seconds_first + seconds, 3),
        offsets=offsets,
        dead_letter_offsets=plan.dead_letter_offsets,
        anomaly_rate=float(valid["is_anomaly"].mean()) if len(valid) else 0.0,
        anomaly_types={str(k): int(v) for k, v in valid["anomaly_type"].astype(str).value_counts().items()},
        offset_range=sum(end - first for first, end in offsets.values()),
    )
    _keep(ctx, manifest)
    log.info(
        "produced %d events (%d broken on purpose) from %s to %s",
        acked_first + acked_rest,
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
    (sensor_id, event_time), which leaves out rows that other producers wrote into the same hours, and keeps as many
    rows of a key as the batch has (a reading sent again, outside the batch, does not count twice).
    """
    from sensorops import archive, features

    raw = archive.read(archive.RAW, batch.start, batch.end, columns=RAW_COLUMNS).frame
    mine = raw[in_batch(raw, batch)]
    found = archive.read(archive.FEATURES, batch.start, batch.end, columns=features.FEATURE_COLUMNS)
    feats = found.frame
    if len(feats) and len(mine):
        key = ["sensor_id", "event_time"]
        wanted = mine.groupby(key).size().rename("_wanted").reset_index()
        feats = feats.merge(wanted, on=key, how="inner")
        feats = feats[feats.groupby(key).cumcount() < feats["_wanted"]]
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
