"""The steps of the Airflow DAG `sensor_mlops_pipeline`, as plain functions of the library.

Each step takes the run's `RunContext` and the outputs of the steps it reads (JSON-able dicts, which Airflow passes
along as XComs) and returns its own output. The DAG only wires them together, so the same code runs from a notebook,
from the command line (`python -m sensorops.pipeline STEP ...`, what a Kubernetes pod runs) and in the Airflow
worker.

Identifying one run's data. The batch is generated with its event time starting at the run's start, and the
producer's Kafka offsets are bracketed (the end offset of every partition before and after producing). Every offset
in that range ends up either in the raw archive (which records each row's Kafka partition and offset) or in the
dead-letter topic (which records the same): that is the row-count balance the validation checks.

Safe to retry. `generate_batch` writes a manifest once the batch is acknowledged and returns it on a retry instead
of producing again; `train_and_evaluate` and `promote_model` find what an earlier attempt logged in MLflow; the
report is overwritten in place.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sensorops import __version__, config
from sensorops.errors import UserError

log = logging.getLogger(__name__)

DAG_ID = "sensor_mlops_pipeline"
EXECUTION_ENV = "SENSOROPS_EXECUTION"
"""`local` (default): tasks run in the Airflow worker. `kubernetes`: each task is a pod running the project image."""
MODES = ("local", "kubernetes")
IMAGE_ENV = "SENSOROPS_IMAGE"
DEFAULT_IMAGE = f"ghcr.io/sensorops/sensorops:{__version__}"
NAMESPACE_ENV = "SENSOROPS_K8S_NAMESPACE"
SECRET_ENV = "SENSOROPS_K8S_SECRET"
"""Kubernetes secret holding the settings (`KAFKA_BOOTSTRAP_SERVERS`, `AWS_*`, ...) that the pods load as env."""

REPORT_BUCKET = config.REPORT_BUCKET
"""Run manifests and HTML reports, under `<dag id>/<run id>/`."""

ENDPOINT_VARIABLES = {
    "kafka": "KAFKA_BOOTSTRAP_SERVERS",
    "s3": "AWS_ENDPOINT_URL",
    "flink": "FLINK_REST_URL",
    "mlflow": "MLFLOW_TRACKING_URI",
    "airflow": "AIRFLOW_API_URL",
}
"""The setting behind each service; a run's `endpoints` parameter overrides them for that run only."""


class DataValidationError(UserError):
    """The batch failed a data check; retrying does not help."""


# -- parameters and context ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunParams:
    """What a run can be told through its `conf` (every field has a small default that runs in minutes)."""

    n_sensors: int = 25
    duration_s: float = 60.0
    """Event time covered by the batch: `n_sensors * duration_s / interval_s` events (3,000 by default)."""
    interval_s: float = 0.5
    anomaly_rate: float = 0.08
    bad_rate: float = 0.01
    """Share of events sent as broken JSON, to exercise the dead-letter path."""
    seed: int = 42
    models: str = "all"
    """Comma-separated models of `training.MODELS`, or `all`."""
    min_anomaly_rate: float = 0.01
    max_anomaly_rate: float = 0.30
    max_dead_letter_ratio: float = 0.05
    archive_timeout_s: float = 300.0
    endpoints: dict[str, str] = field(default_factory=dict)
    """Service name -> address, overriding the settings for this run (e.g. `{"kafka": "127.0.0.1:1"}`)."""

    def __post_init__(self) -> None:
        unknown = set(self.endpoints) - set(ENDPOINT_VARIABLES)
        if unknown:
            raise UserError(f"unknown service in endpoints: {', '.join(sorted(unknown))}; "
                            f"choose from {', '.join(ENDPOINT_VARIABLES)}")  # fmt: skip
        if not 0 <= self.bad_rate < 1 or not 0 <= self.min_anomaly_rate <= self.max_anomaly_rate <= 1:
            raise UserError("bad_rate must be in [0, 1) and 0 <= min_anomaly_rate <= max_anomaly_rate <= 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> RunParams:
        """Parameters from a run's params/conf; keys that are not parameters are refused, naming them."""
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise UserError(f"unknown parameters {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RunContext:
    """Who is running: the Airflow run id, when it was started, and its parameters."""

    run_id: str
    run_after: str
    """ISO timestamp of the run's start (Airflow's `run_after`)."""
    params: RunParams = field(default_factory=RunParams)
    dag_id: str = DAG_ID

    @property
    def slug(self) -> str:
        """The run id with only characters safe in S3 keys and MLflow run names."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.run_id).strip("_")

    @property
    def start(self) -> datetime:
        moment = datetime.fromisoformat(str(self.run_after).replace("Z", "+00:00"))
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc).replace(microsecond=0)

    def key(self, name: str) -> str:
        """Object key of one of this run's files in `REPORT_BUCKET`."""
        return f"{self.dag_id}/{self.slug}/{name}"


def execution_mode() -> str:
    """`local` or `kubernetes`, from `SENSOROPS_EXECUTION`."""
    mode = os.environ.get(EXECUTION_ENV, "local").strip().lower() or "local"
    if mode not in MODES:
        raise UserError(f"{EXECUTION_ENV}={mode!r}: choose one of {', '.join(MODES)}")
    return mode


def endpoint_environment(endpoints: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that point services at the given addresses."""
    env = {}
    for service, address in endpoints.items():
        if service not in ENDPOINT_VARIABLES:
            raise UserError(f"unknown service {service!r}; choose from {', '.join(ENDPOINT_VARIABLES)}")
        env[ENDPOINT_VARIABLES[service]] = str(address)
        if service == "s3":
            env["MLFLOW_S3_ENDPOINT_URL"] = str(address)
    return env


@contextlib.contextmanager
def using_endpoints(endpoints: Mapping[str, str]) -> Iterator[None]:
    """Point `config.load()` (and every client built from it) at other addresses inside the block."""
    env = endpoint_environment(endpoints)
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- small helpers ---------------------------------------------------------------------------------------------------


def _storage_client():  # noqa: ANN202 - minio.Minio, imported lazily
    from sensorops import storage

    return storage.client()


def _read_json(key: str) -> dict[str, Any] | None:
    from minio.error import S3Error

    try:
        response = _storage_client().get_object(REPORT_BUCKET, key)
    except S3Error as exc:
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise
    try:
        return json.loads(response.read())
    finally:
        response.close()
        response.release_conn()


def _put(key: str, data: bytes, content_type: str) -> str:
    _storage_client().put_object(REPORT_BUCKET, key, io.BytesIO(data), len(data), content_type=content_type)
    return f"s3://{REPORT_BUCKET}/{key}"


def _end_offsets(topic: str) -> dict[str, int]:
    """The end offset of every partition of `topic` (keys are partition numbers as strings, for JSON)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.load().kafka_bootstrap_servers, group_id=None,
                             enable_auto_commit=False)  # fmt: skip
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or [])
        if not partitions:
            raise UserError(f"topic {topic!r} does not exist; the prepare step creates it")
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {str(tp.partition): int(offset) for tp, offset in ends.items()}
    finally:
        consumer.close()


def corrupt(values: list[bytes], rate: float, seed: int) -> list[int]:
    """Truncate a seeded random `rate` share of the JSON payloads in place (dead letters); return their indexes."""
    import numpy as np

    n_bad = int(round(len(values) * rate))
    if n_bad == 0:
        return []
    chosen = sorted(np.random.default_rng([seed, 404]).choice(len(values), size=n_bad, replace=False).tolist())
    for i in chosen:
        values[i] = values[i][: len(values[i]) // 2]
    return chosen


# -- the steps -------------------------------------------------------------------------------------------------------


def check_services(ctx: RunContext) -> dict[str, Any]:
    """Every service answers its protocol; otherwise `ServiceUnavailable` names each one that is down."""
    from sensorops import platform
    from sensorops.errors import ServiceUnavailable

    try:
        healths = platform.require(*ENDPOINT_VARIABLES)
    except ServiceUnavailable as exc:
        if not ctx.params.endpoints:
            raise
        overrides = ", ".join(f"{k}={v}" for k, v in ctx.params.endpoints.items())
        raise ServiceUnavailable(f"{exc} (This run's `endpoints` parameter overrides: {overrides}.)") from exc
    return {name: {"url": h.url, "version": h.version} for name, h in healths.items()}


def prepare(ctx: RunContext) -> dict[str, Any]:
    """Create the pipeline's topics and buckets where missing."""
    from sensorops import storage, stream

    stream.prepare(stream.StreamJobConfig())
    created = storage.ensure_buckets()
    return {"buckets_created": created,
            "topics": [config.SENSOR_TOPIC, config.FEATURES_TOPIC, config.AGGREGATES_TOPIC, config.DEAD_LETTER_TOPIC]}


def generate_batch(ctx: RunContext) -> dict[str, Any]:
    """Produce the run's bounded batch to the sensor topic; return its manifest (offsets, counts, time range)."""
    import pandas as pd

    from sensorops import generator, kafka_io, stream

    existing = _read_json(ctx.key("batch.json"))
    if existing:
        log.info("batch of run %s was already produced (%d events); not producing again", ctx.run_id,
                 existing["acknowledged"])  # fmt: skip
        return existing
    p = ctx.params
    events = generator.simulate(n_sensors=p.n_sensors, duration_s=p.duration_s, interval_s=p.interval_s,
                                anomaly_rate=p.anomaly_rate, seed=p.seed,
                                start=stream.batch_start(p.duration_s))  # ends now: none of it late  # fmt: skip
    keys, values = generator.serialize(events)
    bad = corrupt(values, p.bad_rate, p.seed)
    valid = events.drop(index=events.index[bad])
    dlq_before = _end_offsets(config.DEAD_LETTER_TOPIC)
    before = _end_offsets(config.SENSOR_TOPIC)
    report = kafka_io.produce((keys, values), config.SENSOR_TOPIC)
    after = _end_offsets(config.SENSOR_TOPIC)
    times = pd.to_datetime(events["timestamp"], utc=True)
    manifest = {
        "run_id": ctx.run_id,
        "topic": config.SENSOR_TOPIC,
        "start": times.min().isoformat(),
        "end": times.max().isoformat(),
        "events": len(events),
        "bad": len(bad),
        "acknowledged": report.acknowledged,
        "produce_seconds": round(report.seconds, 3),
        "offsets": {part: [before.get(part, 0), end] for part, end in after.items() if end > before.get(part, 0)},
        "dead_letter_offsets": dlq_before,
        "anomaly_rate": float(valid["is_anomaly"].mean()) if len(valid) else 0.0,
        "anomaly_types": {str(k): int(v) for k, v in valid["anomaly_type"].astype(str).value_counts().items()},
    }
    manifest["offset_range"] = sum(end - first for first, end in manifest["offsets"].values())
    _put(ctx.key("batch.json"), json.dumps(manifest, indent=2).encode(), "application/json")
    log.info("produced %d events (%d broken on purpose) from %s to %s", report.acknowledged, len(bad),
             manifest["start"], manifest["end"])  # fmt: skip
    return manifest


def ensure_stream_job(ctx: RunContext) -> dict[str, Any]:
    """Submit the stream job unless it is running; wait until all its tasks run."""
    from sensorops import stream

    job_id, started = stream.submit(stream.StreamJobConfig())
    status = stream.wait_running(job_id)
    return {"job_id": job_id, "started_now": started, "state": status.state,
            "checkpoints_completed": status.checkpoints_completed}  # fmt: skip


def _in_ranges(frame: Any, offsets: Mapping[str, list[int]], partition: str, offset: str) -> Any:
    """Boolean mask of rows whose (partition, offset) falls in the batch's offset ranges."""
    import numpy as np

    mask = np.zeros(len(frame), dtype=bool)
    for part, (first, end) in offsets.items():
        mask |= ((frame[partition] == int(part)) & (frame[offset] >= first) & (frame[offset] < end)).to_numpy()
    return mask


def _archive(kind: str, batch: Mapping[str, Any], columns: list[str] | None = None):  # noqa: ANN202 - DataFrame
    """Rows of the raw or features archive in the hourly partitions that the batch's event time covers."""
    import pandas as pd

    from sensorops import training

    try:
        data = training.load_archive(batch["start"], batch["end"], prefix=kind, columns=columns)
    except UserError as exc:
        if "empty range" in str(exc):
            return pd.DataFrame(columns=columns or []), []
        raise
    return data.frame, data.partitions


def _dead_letters(batch: Mapping[str, Any], timeout_s: float = 15.0) -> list[dict[str, Any]]:
    """Committed dead letters written since the batch started whose source offsets are in the batch's range."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.load().kafka_bootstrap_servers, group_id=None,
                             enable_auto_commit=False, isolation_level="read_committed")  # fmt: skip
    try:
        tps = [TopicPartition(config.DEAD_LETTER_TOPIC, int(p)) for p in batch["dead_letter_offsets"]]
        if not tps:
            return []
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, batch["dead_letter_offsets"][str(tp.partition)])
        ends = consumer.end_offsets(tps)
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    letter = json.loads(r.value)
                    first, end = batch["offsets"].get(str(letter.get("kafka_partition")), (0, 0))
                    offset = letter.get("kafka_offset")  # 0 is a real offset: the first of a new topic
                    if offset is not None and first <= offset < end:
                        found.append(letter)
        return found
    finally:
        consumer.close()


@dataclass
class ArchiveCounts:
    """Where the batch's offsets ended up."""

    archived: int
    dead_letters: int
    duplicates: int
    feature_rows: int

    @property
    def accounted(self) -> int:
        return self.archived + self.dead_letters


def batch_rows(batch: Mapping[str, Any]):  # noqa: ANN201 - (DataFrame, DataFrame, list[str])
    """The batch's rows in the raw archive (by Kafka offset), its feature rows, and the feature partitions read.

    The features archive has no Kafka offsets: feature rows are matched to the batch's raw rows on
    (sensor_id, event_time), which leaves out rows that other producers wrote into the same hours.
    """
    import pandas as pd

    raw, _ = _archive("raw", batch, ["sensor_id", "event_time", "payload", "kafka_partition", "kafka_offset"])
    mine = raw[_in_ranges(raw, batch["offsets"], "kafka_partition", "kafka_offset")] if len(raw) else raw
    feats, partitions = _archive("features", batch)
    if len(feats) and len(mine):
        keys = mine[["sensor_id", "event_time"]].drop_duplicates()
        feats = feats.merge(keys, on=["sensor_id", "event_time"], how="inner")
    else:
        feats = feats.head(0)
    if "hour" not in feats:  # only an empty range lacks it: `training.load_archive` restores it from event_time
        feats["hour"] = pd.Series(dtype="int32")
    return mine.reset_index(drop=True), feats.sort_values("event_time", kind="stable").reset_index(drop=True), partitions


def count_archived(batch: Mapping[str, Any]) -> tuple[ArchiveCounts, Any, Any, list[dict[str, Any]]]:
    """Count the batch in the raw archive, the dead-letter topic and the features archive.

    Returns the counts, the batch's raw rows, its feature rows, and its dead letters.
    """
    mine, feats, _ = batch_rows(batch)
    letters = _dead_letters(batch)
    duplicates = int(mine.duplicated(["kafka_partition", "kafka_offset"]).sum()) if len(mine) else 0
    counts = ArchiveCounts(archived=len(mine), dead_letters=len(letters), duplicates=duplicates,
                           feature_rows=len(feats))  # fmt: skip
    return counts, mine, feats, letters


def wait_for_archive(ctx: RunContext, generate_batch: Mapping[str, Any], poll_s: float = 5.0) -> dict[str, Any]:
    """Wait until every offset of the batch is archived or dead-lettered and its feature rows are archived."""
    batch = generate_batch
    deadline = time.monotonic() + ctx.params.archive_timeout_s
    started = time.monotonic()
    while True:
        counts = count_archived(batch)[0]
        log.info("archive holds %d + %d dead letters of %d offsets, %d feature rows", counts.archived,
                 counts.dead_letters, batch["offset_range"], counts.feature_rows)  # fmt: skip
        if counts.accounted >= batch["offset_range"] and counts.feature_rows >= counts.archived:
            return {**dataclasses.asdict(counts), "waited_s": round(time.monotonic() - started, 1)}
        if time.monotonic() > deadline:
            raise UserError(
                f"after {ctx.params.archive_timeout_s:.0f} s the archive holds {counts.archived} rows and the "
                f"dead-letter topic {counts.dead_letters} of the {batch['offset_range']} events of this batch, and "
                f"{counts.feature_rows} feature rows: is the stream job running and checkpointing? "
                f"See `sensorops stream status` and the Flink UI at {config.load().flink_rest_url}."
            )
        time.sleep(poll_s)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    value: float
    limit: str
    detail: str


def validate_data(ctx: RunContext, generate_batch: Mapping[str, Any]) -> dict[str, Any]:
    """Row counts balance with what was produced, schemas hold, anomaly and dead-letter rates are in range.

    Raises `DataValidationError` listing every failed check.
    """
    from sensorops import features, generator

    batch, p = generate_batch, ctx.params
    counts, raw, feats, letters = count_archived(batch)
    produced = batch["acknowledged"]
    others = batch["offset_range"] - produced
    checks = [
        Check("row counts balance", counts.accounted == batch["offset_range"] == produced, counts.accounted,
              f"== {produced} produced",
              f"{counts.archived} archived + {counts.dead_letters} dead letters"
              + (f"; {others} events of other producers share the offset range" if others else "")),
        Check("feature rows balance", counts.feature_rows == counts.archived, counts.feature_rows,
              f"== {counts.archived} archived events", "one feature row per valid event"),
        Check("no duplicates in the archive", counts.duplicates == 0, counts.duplicates, "== 0",
              "rows with the same Kafka partition and offset"),
    ]  # fmt: skip
    missing = [c for c in features.FEATURE_COLUMNS if c not in feats.columns and c != "hour"]  # hour: partition
    checks.append(Check("feature schema", not missing, len(missing), "== 0 missing columns",
                        f"missing: {', '.join(missing)}" if missing else "all feature columns present"))  # fmt: skip
    sample = [json.loads(v) for v in raw["payload"].head(500)] if len(raw) else []
    violations = generator.validate(sample)
    checks.append(Check("event schema", not violations, len(violations), "== 0 violations",
                        violations[0] if violations else f"{len(sample)} archived payloads checked"))  # fmt: skip
    rate = float(feats["is_anomaly"].astype(bool).mean()) if len(feats) else 0.0
    checks.append(Check("anomaly rate in range", p.min_anomaly_rate <= rate <= p.max_anomaly_rate, rate,
                        f"in [{p.min_anomaly_rate}, {p.max_anomaly_rate}]",
                        f"{int(feats['is_anomaly'].astype(bool).sum()) if len(feats) else 0} of {len(feats)} "
                        "feature rows"))  # fmt: skip
    ratio = counts.dead_letters / max(batch["offset_range"], 1)
    reasons: dict[str, int] = {}
    for letter in letters:
        reasons[letter.get("reason", "?")] = reasons.get(letter.get("reason", "?"), 0) + 1
    checks.append(Check("dead-letter ratio", ratio <= p.max_dead_letter_ratio, ratio, f"<= {p.max_dead_letter_ratio}",
                        ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items())) or "none"))  # fmt: skip
    result = {"checks": [dataclasses.asdict(c) for c in checks], "counts": dataclasses.asdict(counts),
              "dead_letter_reasons": reasons, "anomaly_rate": rate}  # fmt: skip
    failed = [c for c in checks if not c.ok]
    if failed:
        lines = "; ".join(f"{c.name}: {c.value:g} not {c.limit} ({c.detail})" for c in failed)
        raise DataValidationError(f"the batch of run {ctx.run_id} failed {len(failed)} check(s): {lines}")
    return result


def training_data(batch: Mapping[str, Any]):  # noqa: ANN201 - (DataFrame, list[str])
    """The batch's feature rows, in event-time order for `training.time_split`, and the partitions read."""
    _, frame, partitions = batch_rows(batch)
    if frame.empty:
        raise UserError(f"no feature rows archived for the batch from {batch['start']} to {batch['end']}")
    return frame, partitions


def _find_session(ctx: RunContext) -> str | None:
    """The parent MLflow run an earlier attempt of this Airflow run finished, if any."""
    from sensorops import registry

    client = registry.client()
    experiment = client.get_experiment_by_name(registry.EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], max_results=1,
                              filter_string=f"tags.`sensorops.airflow_run_id` = '{ctx.run_id}' "
                                            "and attributes.status = 'FINISHED'")  # fmt: skip
    return runs[0].info.run_id if runs else None


def train_and_evaluate(ctx: RunContext, generate_batch: Mapping[str, Any]) -> dict[str, Any]:
    """Train the models on the batch (split by time), log them to MLflow under one parent run, pick the best."""
    import mlflow

    from sensorops import registry, training

    earlier = _find_session(ctx)
    if earlier:
        log.info("MLflow run %s already holds this run's training; reusing it", earlier)
        registry.client()
        return json.loads(mlflow.artifacts.load_text(f"runs:/{earlier}/pipeline/train.json"))
    frame, partitions = training_data(generate_batch)
    split = training.time_split(frame)
    results = training.train_models(split, ctx.params.models, n_jobs=2, seed=ctx.params.seed, progress=False)
    baselines = training.baselines(split.test)
    session = registry.log_session(results, split, partitions, baselines, run_name=f"airflow-{ctx.slug}")
    best = training.best_result(results)
    logged = session.models[best.name]
    out = {
        "mlflow_run_id": session.run_id,
        "mlflow_url": registry.run_url(session.run_id),
        "best_model": best.name,
        "model_run_id": logged.run_id,
        "model_uri": logged.model_uri,
        "partitions": partitions,
        "train_rows": len(split.train),
        "test_rows": len(split.test),
        "test_metrics": best.evaluation.metrics,
        "cv_f1": best.cv_f1,
    }
    client = registry.client()
    client.log_text(session.run_id, json.dumps(out, indent=2), "pipeline/train.json")
    for key, value in {"sensorops.airflow_dag_id": ctx.dag_id, "sensorops.airflow_run_id": ctx.run_id}.items():
        client.set_tag(session.run_id, key, value)
    return out


def promote_model(
    ctx: RunContext, generate_batch: Mapping[str, Any], train_and_evaluate: Mapping[str, Any]
) -> dict[str, Any]:
    """Register the best model; move the champion alias to it only if it beats the champion on this test period."""
    from sensorops import registry, training

    trained = train_and_evaluate
    client = registry.client()
    versions = client.search_model_versions(f"name = '{registry.MODEL_NAME}' and run_id = '{trained['model_run_id']}'")
    if versions:  # an earlier attempt registered it: report, do not register twice
        version = versions[0]
        champion = registry.current_champion()
        metric = registry.SELECTION_METRIC
        return {"model_name": registry.MODEL_NAME, "version": str(version.version),
                "score": float(version.tags.get(f"test_{metric}", "nan")), "champion_version": champion,
                "champion_score": None, "promoted": champion == str(version.version),
                "reason": "registered by an earlier attempt of this run"}  # fmt: skip
    frame, _ = training_data(generate_batch)
    split = training.time_split(frame)
    logged = registry.LoggedModel(name=trained["best_model"], run_id=trained["model_run_id"],
                                  model_uri=trained["model_uri"])  # fmt: skip
    promotion = registry.register_and_promote(logged, split.test)
    return dataclasses.asdict(promotion)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN (a baseline has no CV score): empty
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(
    ctx: RunContext,
    batch: Mapping[str, Any],
    validation: Mapping[str, Any],
    trained: Mapping[str, Any],
    promotion: Mapping[str, Any],
    comparison: Any,
) -> str:
    """The run report as one self-contained HTML page (plotly.js inlined once)."""
    import plotly.express as px
    import plotly.graph_objects as go

    from sensorops import training_plots

    counts = validation["counts"]
    flow = go.Figure(go.Bar(x=["produced", "archived", "dead letters", "feature rows"],
                            y=[batch["acknowledged"], counts["archived"], counts["dead_letters"],
                               counts["feature_rows"]]))  # fmt: skip
    flow.update_layout(title="Where the batch went", yaxis_title="events")
    types = px.bar(x=list(batch["anomaly_types"]), y=list(batch["anomaly_types"].values()),
                   labels={"x": "anomaly type", "y": "events"}, title="Events by anomaly type", log_y=True)  # fmt: skip
    figures = [flow, types, training_plots.comparison(comparison)]
    plots = "".join(f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figures))
    verdict = "promoted to champion" if promotion["promoted"] else "not promoted"
    summary = [{"run": ctx.run_id, "dag": ctx.dag_id, "events": batch["events"], "broken on purpose": batch["bad"],
                "event time": f"{batch['start']} .. {batch['end']}", "best model": trained["best_model"],
                "test f1": trained["test_metrics"]["f1"], "model version": promotion["version"],
                "verdict": verdict}]  # fmt: skip
    checks = [{"check": c["name"], "ok": "yes" if c["ok"] else "NO", "value": c["value"], "limit": c["limit"],
               "detail": c["detail"]} for c in validation["checks"]]  # fmt: skip
    shown = [c for c in ("kind", "precision", "recall", "f1", "roc_auc", "pr_auc", "false_alarm_rate", "cv_f1")
             if c in comparison.columns]
    rows = comparison[shown].reset_index().to_dict("records")
    mlflow_link = f"<a href='{html.escape(trained['mlflow_url'])}'>MLflow run {trained['mlflow_run_id']}</a>"
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}")  # fmt: skip
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{DAG_ID} {html.escape(ctx.run_id)}</title>"
        f"<style>{style}</style></head><body><h1>Pipeline run {html.escape(ctx.run_id)}</h1>{_table(summary)}"
        f"<p>{mlflow_link}. {html.escape(promotion['reason'])}.</p>"
        f"<h2>Data checks</h2>{_table(checks)}<h2>Models on the test period</h2>{_table(rows)}"
        f"<h2>Plots</h2>{plots}</body></html>"
    )


def write_report(
    ctx: RunContext,
    generate_batch: Mapping[str, Any],
    validate_data: Mapping[str, Any],
    train_and_evaluate: Mapping[str, Any],
    promote_model: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the HTML run report to S3 and link it from the MLflow run (tags and the run's description)."""
    import mlflow
    import pandas as pd

    from sensorops import registry

    trained = train_and_evaluate
    registry.client()
    comparison = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{trained['mlflow_run_id']}/comparison.csv")),
                             index_col=0)  # fmt: skip
    page = render_report(ctx, generate_batch, validate_data, trained, promote_model, comparison)
    key = ctx.key("report.html")
    data = page.encode()
    uri = _put(key, data, "text/html; charset=utf-8")
    url = _storage_client().presigned_get_object(REPORT_BUCKET, key, expires=timedelta(days=7))
    client = registry.client()
    client.set_tag(trained["mlflow_run_id"], "sensorops.report_uri", uri)
    client.set_tag(trained["mlflow_run_id"], "sensorops.report_url", url)
    client.set_tag(trained["mlflow_run_id"], "mlflow.note.content",
                   f"Run of the Airflow DAG `{ctx.dag_id}` ({ctx.run_id}). Report: [{uri}]({url}) "
                   f"(link valid for 7 days; `sensorops.report_uri` is permanent).")  # fmt: skip
    log.info("report written to %s", uri)
    return {"report_uri": uri, "report_url": url, "bytes": len(data)}


# -- the task graph --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One task of the DAG: its function, the upstream outputs it reads, and how Airflow retries and bounds it."""

    name: str
    run: Callable[..., dict[str, Any]]
    inputs: tuple[str, ...] = ()
    retries: int = 2
    retry_delay_s: float = 10.0
    timeout_s: float = 300.0

    @property
    def doc(self) -> str:
        """The first line of the step function's docstring."""
        return (self.run.__doc__ or "").strip().splitlines()[0]


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("check_services", check_services, retries=2, retry_delay_s=10, timeout_s=120),
        Step("prepare", prepare, timeout_s=120),
        Step("generate_batch", generate_batch, timeout_s=300),
        Step("ensure_stream_job", ensure_stream_job, retries=2, retry_delay_s=30, timeout_s=420),
        Step("wait_for_archive", wait_for_archive, ("generate_batch",), retries=1, timeout_s=900),
        Step("validate_data", validate_data, ("generate_batch",), retries=0, timeout_s=300),
        Step("train_and_evaluate", train_and_evaluate, ("generate_batch",), retries=1, retry_delay_s=30,
             timeout_s=1200),
        Step("promote_model", promote_model, ("generate_batch", "train_and_evaluate"), timeout_s=600),
        Step("write_report", write_report,
             ("generate_batch", "validate_data", "train_and_evaluate", "promote_model"), timeout_s=300),
    )
}  # fmt: skip
"""The steps in order; the DAG file wires them (check, prepare, then batch and stream job side by side, then ...)."""


def run_step(name: str, ctx: RunContext, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one step with its upstream outputs, with the run's endpoint overrides applied."""
    if name not in STEPS:
        raise UserError(f"unknown step {name!r}; the steps are {', '.join(STEPS)}")
    step = STEPS[name]
    inputs = dict(inputs or {})
    missing = [i for i in step.inputs if inputs.get(i) is None]
    if missing:
        raise UserError(f"step {name} needs the output of {', '.join(missing)}")
    with using_endpoints(ctx.params.endpoints):
        return step.run(ctx, **{i: inputs[i] for i in step.inputs})


def pod_arguments(name: str) -> list[str]:
    """The command-line arguments of a step's pod, as Airflow templates (run id, params, upstream XComs)."""
    pulls = ", ".join(f"{i}=ti.xcom_pull(task_ids='{i}')" for i in STEPS[name].inputs)
    return [
        name,
        "--run-id", "{{ run_id }}",
        "--run-after", "{{ dag_run.run_after }}",
        "--params", "{{ dict(params) | tojson }}",
        "--inputs", f"{{{{ dict({pulls}) | tojson }}}}",
        "--xcom-file", "/airflow/xcom/return.json",
    ]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> tuple[str, RunContext, dict[str, Any], str]:
    """The command line of a pod: (step, run context, upstream outputs, XCom file)."""
    parser = argparse.ArgumentParser(prog="python -m sensorops.pipeline", description=main.__doc__)
    parser.add_argument("step", choices=list(STEPS))
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--run-after", default="", help="ISO time the run started (default: now)")
    parser.add_argument("--params", default="{}", help="JSON object of RunParams fields")
    parser.add_argument("--inputs", default="{}", help="JSON object: upstream step -> its output")
    parser.add_argument("--xcom-file", default="", help="also write the output here (Airflow's pod XCom path)")
    args = parser.parse_args(argv)
    try:
        params, inputs = json.loads(args.params), json.loads(args.inputs)
    except json.JSONDecodeError as exc:
        raise UserError(f"--params and --inputs must be JSON objects: {exc}") from exc
    ctx = RunContext(run_id=args.run_id, run_after=args.run_after or datetime.now(timezone.utc).isoformat(),
                     params=RunParams.from_mapping(params))  # fmt: skip
    return args.step, ctx, inputs, args.xcom_file


def main(argv: list[str] | None = None) -> int:
    """Run one step from the command line, as a Kubernetes pod does: `python -m sensorops.pipeline STEP ...`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        step, ctx, inputs, xcom_file = parse_args(argv)
        output = run_step(step, ctx, inputs)
    except UserError as exc:
        log.error("%s", exc)
        return 1
    text = json.dumps(output, default=str)
    if xcom_file:
        os.makedirs(os.path.dirname(xcom_file) or ".", exist_ok=True)
        with open(xcom_file, "w") as f:
            f.write(text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
