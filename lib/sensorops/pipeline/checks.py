"""Waiting for the batch to reach the archive, and the data checks that stop a bad batch before training.

The checks hold the batch to what was produced: every offset archived or dead-lettered exactly once, one feature
row per valid event, the feature and event schemas, and the anomaly and dead-letter rates within the run's limits.
Bad data stays bad, so `validate_data` is the one step that never retries.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from sensorops import config
from sensorops.errors import UserError
from sensorops.pipeline.batch import BatchRows, count_archived
from sensorops.pipeline.context import RunContext, RunParams
from sensorops.pipeline.outputs import ArchiveCounts, ArchiveWait, BatchManifest, Check, Validation
from sensorops.waiting import wait_until

log = logging.getLogger(__name__)

EVENT_SAMPLE = 500
"""Archived payloads checked against the event schema."""


class DataValidationError(UserError):
    """The batch failed a data check; retrying does not help."""


def wait_for_archive(ctx: RunContext, generate_batch: BatchManifest, poll_s: float = 5.0) -> ArchiveWait:
    """Wait until every offset of the batch is archived or dead-lettered and its feature rows are archived."""
    batch = generate_batch
    started = time.monotonic()

    def probe() -> ArchiveCounts:
        counts = count_archived(batch).counts
        log.info(
            "archive holds %d + %d dead letters of %d offsets, %d feature rows",
            counts.archived,
            counts.dead_letters,
            batch.offset_range,
            counts.feature_rows,
        )
        return counts

    def complete(counts: ArchiveCounts) -> bool:
        return counts.accounted >= batch.offset_range and counts.feature_rows >= counts.archived

    def stuck(counts: ArchiveCounts) -> str:
        return (
            f"the archive holds {counts.archived} rows and the dead-letter topic {counts.dead_letters} of the "
            f"{batch.offset_range} events of this batch, and {counts.feature_rows} feature rows: is the stream "
            f"job running and checkpointing? See `sensorops stream status` and the Flink UI at "
            f"{config.load().flink_rest_url}"
        )

    counts = wait_until(probe, complete, timeout=ctx.params.archive_timeout_s, interval=poll_s, message=stuck)
    return ArchiveWait(**dataclasses.asdict(counts), waited_s=round(time.monotonic() - started, 1))


def _balance_checks(batch: BatchManifest, counts: ArchiveCounts) -> list[Check]:
    """Every offset accounted for once, and one feature row per archived event."""
    produced = batch.acknowledged
    others = batch.offset_range - produced
    shared = f"; {others} events of other producers share the offset range" if others else ""
    return [
        Check(
            "row counts balance",
            counts.accounted == batch.offset_range == produced,
            counts.accounted,
            f"== {produced} produced",
            f"{counts.archived} archived + {counts.dead_letters} dead letters{shared}",
        ),
        Check(
            "feature rows balance",
            counts.feature_rows == counts.archived,
            counts.feature_rows,
            f"== {counts.archived} archived events",
            "one feature row per valid event",
        ),
        Check(
            "no duplicates in the archive",
            counts.duplicates == 0,
            counts.duplicates,
            "== 0",
            "rows with the same Kafka partition and offset",
        ),
    ]


def _schema_checks(rows: BatchRows) -> list[Check]:
    """The feature rows have every feature column; a sample of archived events holds to the event schema."""
    from sensorops import events, features

    missing = [c for c in features.FEATURE_COLUMNS if c not in rows.features.columns]
    sample = [json.loads(v) for v in rows.raw["payload"].head(EVENT_SAMPLE)]
    violations = events.validate(sample)
    return [
        Check(
            "feature schema",
            not missing,
            len(missing),
            "== 0 missing columns",
            f"missing: {', '.join(missing)}" if missing else "all feature columns present",
        ),
        Check(
            "event schema",
            not violations,
            len(violations),
            "== 0 violations",
            violations[0] if violations else f"{len(sample)} archived payloads checked",
        ),
    ]


def _rate_checks(p: RunParams, anomalies: int, feature_rows: int, ratio: float, reasons: dict[str, int]) -> list[Check]:
    """The anomaly rate among the feature rows and the dead-letter ratio of the batch, within the run's limits."""
    rate = anomalies / feature_rows if feature_rows else 0.0
    return [
        Check(
            "anomaly rate in range",
            p.min_anomaly_rate <= rate <= p.max_anomaly_rate,
            rate,
            f"in [{p.min_anomaly_rate}, {p.max_anomaly_rate}]",
            f"{anomalies} of {feature_rows} feature rows",
        ),
        Check(
            "dead-letter ratio",
            ratio <= p.max_dead_letter_ratio,
            ratio,
            f"<= {p.max_dead_letter_ratio}",
            ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none",
        ),
    ]


def validate_data(ctx: RunContext, generate_batch: BatchManifest) -> Validation:
    """Row counts balance with what was produced, schemas hold, anomaly and dead-letter rates are in range.

    Raises `DataValidationError` listing every failed check.
    """
    batch = generate_batch
    found = count_archived(batch)
    counts, feats = found.counts, found.rows.features
    anomalies = int(feats["is_anomaly"].astype(bool).sum()) if len(feats) else 0
    counted = found.dead_letters["reason"].fillna("?").astype(str).value_counts()  # `?`: a letter that gives none
    reasons = {str(reason): int(n) for reason, n in counted.items()}
    rates = _rate_checks(ctx.params, anomalies, len(feats), counts.dead_letters / max(batch.offset_range, 1), reasons)
    result = Validation(
        checks=[*_balance_checks(batch, counts), *_schema_checks(found.rows), *rates],
        counts=counts,
        dead_letter_reasons=reasons,
        anomaly_rate=rates[0].value,
    )
    if result.failed:
        lines = "; ".join(f"{c.name}: {c.value:g} not {c.limit} ({c.detail})" for c in result.failed)
        raise DataValidationError(f"the batch of run {ctx.run_id} failed {len(result.failed)} check(s): {lines}")
    return result
