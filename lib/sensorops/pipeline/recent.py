"""The batch of a run with `source=recent`: what the sensor topic received in the minutes before the run.

Retraining when the data moves (`sensor_drift_watch` triggers it) needs the readings that moved, not new simulated
ones. So nothing is produced: the batch is the records Kafka stamped between `run_after - recent_minutes` and
`run_after`, found with `offsets_for_times`, and its manifest says what a generated batch's would (events, the ones
that are dead letters by the stream's own rules, anomaly rate, event-time range). The rest of the run reads it as
it reads a generated batch: it waits until the stream job has archived it, checks that the counts balance, trains on
it and promotes the new model only if it beats the champion on this batch's test period.
"""

from __future__ import annotations

import logging

from sensorops import config
from sensorops.errors import UserError
from sensorops.pipeline.context import RunContext
from sensorops.pipeline.outputs import BatchManifest

log = logging.getLogger(__name__)


def recent_batch(ctx: RunContext) -> BatchManifest:
    """The manifest of the records written to the sensor topic in the `recent_minutes` before the run."""
    import pandas as pd

    from sensorops import events, kafka_io

    end = pd.Timestamp(ctx.run_after)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    start_ms = int((end - pd.Timedelta(minutes=ctx.params.recent_minutes)).timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000)
    firsts = kafka_io.offsets_at(config.SENSOR_TOPIC, start_ms)
    ends = kafka_io.offsets_at(config.SENSOR_TOPIC, end_ms)
    offsets = {part: (firsts[part], ends[part]) for part in ends if ends[part] > firsts[part]}
    total = sum(last - first for first, last in offsets.values())
    if not total:
        raise UserError(
            f"the topic {config.SENSOR_TOPIC!r} received nothing in the {ctx.params.recent_minutes:g} minutes before "
            f"{end.isoformat()}: nothing to retrain on (produce readings first, e.g. `sensorops generate`)"
        )
    found = [
        r
        for r in kafka_io.records(config.SENSOR_TOPIC, start=firsts, max_records=10**7, timeout_s=300)
        if r.partition in offsets and r.offset < offsets[r.partition][1]
    ]
    if len(found) != total:
        raise UserError(f"read {len(found)} of the {total} records of the window back from Kafka; retry")
    valid, dead = events.split_payloads([r.value for r in found], [r.key for r in found])
    if valid.empty:
        raise UserError(f"none of the {total} records of the window is a valid reading ({len(dead)} dead letters)")
    log.info("the batch is the %d records of the last %g minutes (%d dead letters)", total, ctx.params.recent_minutes,
             len(dead))  # fmt: skip
    return BatchManifest(
        run_id=ctx.run_id,
        topic=config.SENSOR_TOPIC,
        start=valid["event_time"].min().isoformat(),
        end=valid["event_time"].max().isoformat(),
        events=total,
        bad=len(dead),
        acknowledged=total,
        produce_seconds=0.0,
        offsets=offsets,
        dead_letter_offsets=kafka_io.offsets_at(config.DEAD_LETTER_TOPIC, start_ms),
        anomaly_rate=float(valid["is_anomaly"].mean()),
        anomaly_types={str(k): int(v) for k, v in valid["anomaly_type"].astype(str).value_counts().items()},
        offset_range=total,
    )
