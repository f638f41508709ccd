"""The stream job: Kafka sensor events -> features, window aggregates, dead letters and an S3 archive.

The job is Flink SQL, assembled here (`statements`), with one Python UDF that decodes each record once
(`parse_event`); it is run by `sensorops/jobs/sensor_stream.py` inside the Flink client and submitted to the session
cluster with `submit`. `status` and `cancel` talk to the Flink REST API.

Delivery guarantees, per sink:
- the archive (FileSink, Parquet on S3) commits files on checkpoints: exactly once, visible at checkpoints;
- the Kafka sinks are transactional (`exactly-once`) by default: `read_committed` consumers see rows only once
  the checkpoint that covers them completes, so their latency is about a checkpoint interval;
- the features topic feeds real-time scoring, so its guarantee is a setting (`features_guarantee`), by default
  `at-least-once`: rows are visible within milliseconds (p99 under 1 s at 1,000 events/s, against about a
  checkpoint interval with `exactly-once`), and after a failure some may appear twice (a scorer that keys its
  output by sensor and event time absorbs them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import requests

from sensorops import config, features
from sensorops.errors import ServiceUnavailable, UserError

log = logging.getLogger(__name__)

JOB_FILE = Path(__file__).parent / "jobs" / "sensor_stream.py"
DEFAULT_JOB_NAME = "sensorops-stream"
GUARANTEES = ("exactly-once", "at-least-once", "none")
ACTIVE_STATES = ("INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "RECONCILING", "FAILING", "CANCELLING")


@dataclass
class StreamJobConfig:
    """Everything that parameterises one deployment of the stream job."""

    name: str = DEFAULT_JOB_NAME
    source_topic: str = config.SENSOR_TOPIC
    features_topic: str = config.FEATURES_TOPIC
    aggregates_topic: str = config.AGGREGATES_TOPIC
    dead_letter_topic: str = config.DEAD_LETTER_TOPIC
    archive_path: str = f"s3://{config.ARCHIVE_BUCKET}"
    """Raw events go to `<archive_path>/raw/`, features to `<archive_path>/features/`."""
    group_id: str = ""
    """Kafka consumer group; defaults to the job name."""
    bootstrap_servers: str = ""
    """Defaults to the configured `KAFKA_BOOTSTRAP_SERVERS`."""
    parallelism: int = 1
    checkpoint_interval_s: float = 10.0
    watermark_delay_s: float = 5.0
    idle_timeout_s: float = 10.0
    window_minutes: int = 1
    features_guarantee: str = "at-least-once"
    """Guarantee of the features topic: low latency for real-time scoring (see the module docstring)."""
    kafka_guarantee: str = "exactly-once"
    """Guarantee of the aggregates and dead-letter sinks."""
    archive: bool = True
    aggregates: bool = True
    extra: dict[str, str] = field(default_factory=dict)
    """Further Flink configuration for the job (`key=value`)."""

    def __post_init__(self) -> None:
        for guarantee in (self.features_guarantee, self.kafka_guarantee):
            if guarantee not in GUARANTEES:
                raise UserError(f"unknown delivery guarantee {guarantee!r}; choose one of {', '.join(GUARANTEES)}")
        if self.checkpoint_interval_s <= 0 or self.watermark_delay_s < 0 or self.parallelism < 1:
            raise UserError("checkpoint interval and parallelism must be positive, the watermark delay not negative")
        self.group_id = self.group_id or self.name
        self.bootstrap_servers = self.bootstrap_servers or config.load().kafka_bootstrap_servers
        self.archive_path = self.archive_path.rstrip("/")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StreamJobConfig:
        return cls(**json.loads(text))


# -- the job in SQL --------------------------------------------------------------------------------------------


def _kafka_sink(topic: str, servers: str, guarantee: str, prefix: str, key: str | None = None) -> str:
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": servers,
        "sink.delivery-guarantee": guarantee,
        "value.format": "json",
        "value.json.timestamp-format.standard": "ISO-8601",
        "value.json.encode.ignore-null-fields": "false",
        "properties.linger.ms": "5",  # fuller batches: fewer requests for the broker to handle
        "properties.batch.size": "262144",
    }
    if guarantee == "exactly-once":
        options["sink.transactional-id-prefix"] = prefix
        options["properties.transaction.timeout.ms"] = "600000"  # below the broker's 15 min maximum
    if key:
        options.update({"key.format": "raw", "key.fields": key, "value.fields-include": "ALL"})
    return _with(options)


def _with(options: dict[str, str]) -> str:
    return "WITH (\n  " + ",\n  ".join(f"'{k}' = '{v}'" for k, v in options.items()) + "\n)"


def _parquet_sink(path: str) -> dict[str, str]:
    return {
        "connector": "filesystem",
        "path": path,
        "format": "parquet",
        "parquet.compression": "SNAPPY",
        "parquet.write.int64.timestamp": "true",  # INT64 milliseconds, not the legacy INT96
        "parquet.timestamp.time.unit": "millis",
        # Plain encoding: dictionaries of near-unique doubles and payloads cost CPU and save little space.
        "parquet.enable.dictionary": "false",
        "sink.partition-commit.policy.kind": "success-file",
        "sink.partition-commit.delay": "0 s",
    }


FEATURE_TYPES = {
    "sensor_id": "STRING", "event_time": "TIMESTAMP_LTZ(3)", "temperature": "DOUBLE", "humidity": "DOUBLE",
    "pressure": "DOUBLE", "is_anomaly": "BOOLEAN", "anomaly_type": "STRING", "building": "STRING", "floor": "INT",
    "room": "STRING", "device_model": "STRING", "firmware_version": "STRING", "battery_level": "DOUBLE",
    "hour": "INT", "day_of_week": "INT", "is_weekend": "BOOLEAN", "is_business_hours": "BOOLEAN",
    "trend_category": "STRING",
}  # fmt: skip
"""Flink types of the feature columns; the rest are DOUBLE."""


def _feature_schema(exclude: tuple[str, ...] = ()) -> str:
    return ",\n  ".join(
        f"`{c}` {FEATURE_TYPES.get(c, 'DOUBLE')}" for c in features.FEATURE_COLUMNS if c not in exclude
    )


PARSED_FIELDS = ("reason", "sensor_id", "event_ms", *features.EVENT_COLUMNS[2:])
"""What `parse_event` returns for each record: the dead-letter reason, or the flat event (reason NULL)."""


def parse_event(payload: str | None) -> Any:
    """The job's one Python UDF: decode and check a raw value once (`features.read_event`), as a ROW."""
    from pyflink.common import Row

    reason, event = features.read_event(payload)
    if event is None:
        return Row(reason, *[None] * (len(PARSED_FIELDS) - 1))
    return Row(None, *(event[f] for f in PARSED_FIELDS[1:]))


def parse_event_udf() -> Any:
    from pyflink.table.udf import udf

    types = {"reason": "STRING", "event_ms": "BIGINT", **FEATURE_TYPES}
    fields = ", ".join(f"`{f}` {types.get(f, 'DOUBLE')}" for f in PARSED_FIELDS)
    return udf(parse_event, result_type=f"ROW<{fields}>")


@dataclass
class JobSql:
    """The job as SQL, in the order `run_job` applies it."""

    source: str
    """The Kafka source table: each value as a raw string, with its partition, offset and timestamp."""
    parse: str
    """The query that decodes every value once with the `parse_event` UDF (SQL's JSON functions parse the payload
    again for each field they extract). `run_job` gives its rows event time and a watermark: the view `parsed`."""
    watermark: str
    """The watermark of `parsed`: bounded out-of-orderness on `event_time`."""
    views: list[str]
    """Views and sink tables over `parsed`."""
    inserts: list[str]
    """The INSERTs, which run together as one Flink job."""


def statements(cfg: StreamJobConfig) -> JobSql:
    """The job's SQL: source, parse, views and sinks, inserts."""
    source = {
        "connector": "kafka",
        "topic": cfg.source_topic,
        "properties.bootstrap.servers": cfg.bootstrap_servers,
        "properties.group.id": cfg.group_id,
        "properties.auto.offset.reset": "earliest",
        "scan.startup.mode": "group-offsets",
        "value.format": "raw",
        "value.raw.charset": "UTF-8",
    }
    source_ddl = f"""CREATE TEMPORARY TABLE sensor_source (
  payload STRING,
  kafka_partition INT METADATA FROM 'partition' VIRTUAL,
  kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  kafka_timestamp TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
) {_with(source)}"""
    parse = ("SELECT payload, kafka_partition, kafka_offset, kafka_timestamp, e.*\n"
             "FROM (SELECT *, parse_event(payload) AS e FROM sensor_source)")  # fmt: skip
    ddl = [
        f"""CREATE TEMPORARY VIEW events AS
SELECT {", ".join(f"`{c}`" for c in features.EVENT_COLUMNS)}, event_ms, proc_time,
  payload, kafka_partition, kafka_offset, kafka_timestamp,
  COALESCE(event_time < CURRENT_WATERMARK(event_time), FALSE) AS is_late
FROM parsed WHERE reason IS NULL""",
    ]
    ddl.append(f"CREATE TEMPORARY VIEW feature_rows AS {features.flink_sql('events')}")
    ddl.append(f"""CREATE TEMPORARY TABLE dead_letter_sink (
  payload STRING, reason STRING, kafka_partition INT, kafka_offset BIGINT, kafka_timestamp TIMESTAMP_LTZ(3)
) {_kafka_sink(cfg.dead_letter_topic, cfg.bootstrap_servers, cfg.kafka_guarantee, f"{cfg.name}-dlq")}""")
    ddl.append(f"""CREATE TEMPORARY TABLE features_sink (
  {_feature_schema()}
) {_kafka_sink(cfg.features_topic, cfg.bootstrap_servers, cfg.features_guarantee, f"{cfg.name}-features",
               key="sensor_id")}""")
    inserts = [
        "INSERT INTO dead_letter_sink SELECT payload, reason, kafka_partition, kafka_offset, kafka_timestamp "
        "FROM parsed WHERE reason IS NOT NULL",
        "INSERT INTO features_sink SELECT * FROM feature_rows",
    ]
    if cfg.archive:
        partitions = "DATE_FORMAT(event_time, 'yyyy-MM-dd') AS dt, DATE_FORMAT(event_time, 'HH') AS `hour`"
        ddl.append(f"""CREATE TEMPORARY TABLE raw_archive (
  sensor_id STRING, event_time TIMESTAMP_LTZ(3), payload STRING, kafka_partition INT, kafka_offset BIGINT,
  kafka_timestamp TIMESTAMP_LTZ(3), is_late BOOLEAN, dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) {_with(_parquet_sink(f"{cfg.archive_path}/raw"))}""")
        ddl.append(f"""CREATE TEMPORARY TABLE features_archive (
  {_feature_schema(exclude=("hour",))},
  dt STRING, `hour` STRING
) PARTITIONED BY (dt, `hour`) {_with(_parquet_sink(f"{cfg.archive_path}/features"))}""")
        columns = ", ".join(f"`{c}`" for c in features.FEATURE_COLUMNS if c != "hour")
        inserts += [
            "INSERT INTO raw_archive SELECT sensor_id, event_time, payload, kafka_partition, kafka_offset, "
            f"kafka_timestamp, is_late, {partitions} FROM events",
            f"INSERT INTO features_archive SELECT {columns}, {partitions} FROM feature_rows",
        ]
    if cfg.aggregates:
        ddl.append(f"""CREATE TEMPORARY TABLE aggregates_sink (
  `level` STRING, `key` STRING, window_start TIMESTAMP_LTZ(3), window_end TIMESTAMP_LTZ(3),
  event_count BIGINT, anomaly_count BIGINT,
  {", ".join(f"{c}_{s} DOUBLE" for c in features.CHANNELS for s in ("min", "max", "mean", "std"))}
) {_kafka_sink(cfg.aggregates_topic, cfg.bootstrap_servers, cfg.kafka_guarantee, f"{cfg.name}-aggregates",
               key="key")}""")
        stats = ", ".join(
            f"MIN({c}), MAX({c}), AVG({c}), SQRT(GREATEST(AVG({c} * {c}) - AVG({c}) * AVG({c}), 0E0))"
            for c in features.CHANNELS
        )
        window = f"TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '{cfg.window_minutes}' MINUTES))"
        for level, key in (("sensor", "sensor_id"), ("building", "building")):
            inserts.append(
                f"INSERT INTO aggregates_sink SELECT '{level}', {key}, window_start, window_end, "
                f"COUNT(*), COUNT(*) FILTER (WHERE is_anomaly), {stats} "
                f"FROM {window} WHERE {key} IS NOT NULL GROUP BY {key}, window_start, window_end"
            )
    watermark = f"event_time - INTERVAL '{cfg.watermark_delay_s:g}' SECOND"
    return JobSql(source_ddl, parse, watermark, ddl, inserts)


def job_configuration(cfg: StreamJobConfig) -> dict[str, str]:
    """Flink configuration the job sets for itself: checkpoints, restarts, time zone, parallelism."""
    return {
        "pipeline.name": cfg.name,
        "parallelism.default": str(cfg.parallelism),
        "table.local-time-zone": "UTC",
        "pipeline.object-reuse": "true",  # chained SQL operators do not copy every row for each of their outputs
        "table.exec.source.idle-timeout": f"{cfg.idle_timeout_s:g} s",
        "execution.checkpointing.interval": f"{cfg.checkpoint_interval_s:g} s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.min-pause": "1 s",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "1 s",
        "restart-strategy.exponential-delay.max-backoff": "30 s",
        # The UDF runs in a Python worker process, which takes records in bundles: bound a bundle's wait (default
        # 1 s) so that a feature row still leaves within milliseconds at a low rate.
        "python.execution-mode": "process",
        "python.fn-execution.bundle.time": "50",
        **cfg.extra,
    }


def run_job(cfg: StreamJobConfig) -> None:
    """Build the job and hand it to the cluster (runs inside `flink run -py`, not in the caller's process)."""
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, Schema, StreamTableEnvironment

    env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment(),
                                        EnvironmentSettings.in_streaming_mode())  # fmt: skip
    for key, value in job_configuration(cfg).items():
        env.get_config().set(key, value)
    sql = statements(cfg)
    env.execute_sql(sql.source)
    env.create_temporary_function("parse_event", parse_event_udf())
    # SQL declares watermarks only on tables, so the decoded rows pass through a stream that gets one.
    timed = Schema.new_builder().column_by_expression("event_time", "TO_TIMESTAMP_LTZ(COALESCE(event_ms, 0), 3)")
    timed = timed.column_by_expression("proc_time", "PROCTIME()").watermark("event_time", sql.watermark).build()
    env.create_temporary_view("parsed", env.from_data_stream(env.to_data_stream(env.sql_query(sql.parse)), timed))
    for statement in sql.views:
        env.execute_sql(statement)
    statement_set = env.create_statement_set()
    for insert in sql.inserts:
        statement_set.add_insert_sql(insert)
    statement_set.execute()


def parse_job_args(argv: list[str]) -> StreamJobConfig:
    parser = argparse.ArgumentParser(prog="sensor_stream")
    parser.add_argument("--config-json", required=True)
    return StreamJobConfig.from_json(parser.parse_args(argv).config_json)


# -- submission and monitoring through the Flink client and REST API ----------------------------------------------


@dataclass
class JobStatus:
    """What the Flink REST API says about one job."""

    job_id: str
    name: str
    state: str
    started: float = 0.0
    """Epoch seconds."""
    duration_s: float = 0.0
    records_in: int = 0
    """Records read from the source topic."""
    records_out: dict[str, int] = field(default_factory=dict)
    """Records received by each sink, by sink table name."""
    checkpoints_completed: int = 0
    last_checkpoint: str = ""
    """External path of the latest completed checkpoint (where a resubmission resumes)."""

    @property
    def running(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def records_per_s(self) -> float:
        return self.records_in / self.duration_s if self.duration_s > 0 else 0.0


def _rest(path: str, method: str = "GET", timeout: float = 10.0, **kwargs: Any) -> Any:
    url = config.load().flink_rest_url + path
    try:
        response = requests.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise ServiceUnavailable(f"Flink is not reachable at {url} ({exc}). Start the platform with `make up`.")
    if response.status_code == 404:
        raise UserError(f"Flink has no {path}")
    response.raise_for_status()
    return response.json() if response.content else {}


def jobs(name: str | None = None) -> list[dict[str, Any]]:
    """The cluster's jobs (newest first), optionally only those called `name`."""
    listed = _rest("/jobs/overview").get("jobs", [])
    listed.sort(key=lambda j: j.get("start-time", 0), reverse=True)
    return [j for j in listed if name is None or j["name"] == name]


def find_active(name: str = DEFAULT_JOB_NAME) -> str | None:
    """The id of the running (or starting, restarting) job called `name`, if any."""
    for job in jobs(name):
        if job["state"] in ACTIVE_STATES:
            return job["jid"]
    return None


def _sum_metric(job_id: str, vertex_id: str, metric: str) -> int:
    got = _rest(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics", params={"get": metric, "agg": "sum"})
    return int(float(got[0]["sum"])) if got else 0


def _operator_metrics(job_id: str, vertex_id: str) -> list[str]:
    return [m["id"] for m in _rest(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics")]


def _count_metrics(job_id: str, vertex: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(metric, sink table) pairs to sum in a vertex; sink None for the source's records read.

    Kafka sink writers carry their table's name; the two file writers do not, so the one chained to the source
    is the raw archive and the other the features archive.
    """
    try:
        available = _operator_metrics(job_id, vertex["id"])
    except (UserError, requests.HTTPError):
        return []
    pairs: list[tuple[str, str | None]] = []
    for metric in available:
        if metric.startswith("Source__sensor_source") and metric.endswith(".numRecordsOut"):
            pairs.append((metric, None))
        elif metric == "StreamingFileWriter.numRecordsIn":
            pairs.append((metric, "raw_archive" if vertex["name"].startswith("Source:") else "features_archive"))
        else:
            for sink in SINK_TABLES:
                if metric.startswith(f"{sink}[") and metric.endswith("__Writer.numRecordsIn"):
                    pairs.append((metric, sink))
    return pairs


SINK_TABLES = ("dead_letter_sink", "features_sink", "aggregates_sink", "raw_archive", "features_archive")


def status(name: str = DEFAULT_JOB_NAME, job_id: str | None = None) -> JobStatus:
    """State, record counts and checkpoints of the newest job called `name` (or of `job_id`)."""
    if job_id is None:
        listed = jobs(name)
        if not listed:
            raise UserError(f"no Flink job called {name!r}; start it with `sensorops stream submit`")
        job_id = listed[0]["jid"]
    detail = _rest(f"/jobs/{job_id}")
    result = JobStatus(
        job_id=job_id, name=detail["name"], state=detail["state"],
        started=detail.get("start-time", 0) / 1000, duration_s=detail.get("duration", 0) / 1000,
    )  # fmt: skip
    if result.running:
        for vertex in detail.get("vertices", []):
            for metric, sink in _count_metrics(job_id, vertex):
                value = _sum_metric(job_id, vertex["id"], metric)
                if sink is None:
                    result.records_in += value
                else:
                    result.records_out[sink] = result.records_out.get(sink, 0) + value
    try:
        checkpoints = _rest(f"/jobs/{job_id}/checkpoints")
    except (UserError, requests.HTTPError):
        checkpoints = {}
    result.checkpoints_completed = checkpoints.get("counts", {}).get("completed", 0)
    latest = (checkpoints.get("latest") or {}).get("completed") or {}
    result.last_checkpoint = latest.get("external_path", "")
    return result


def _state_file(name: str) -> Path:
    return config.load().home / "stream" / f"{name}.json"


def _remember(name: str, **values: Any) -> None:
    path = _state_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved.update(values)
    path.write_text(json.dumps(saved, indent=2))


def resume_point(name: str = DEFAULT_JOB_NAME) -> str:
    """The checkpoint or savepoint a resubmission of `name` starts from ('' for a fresh start)."""
    path = _state_file(name)
    return json.loads(path.read_text()).get("resume_from", "") if path.exists() else ""


def prepare(cfg: StreamJobConfig) -> None:
    """Create the job's topics and buckets if missing (the job would otherwise fail on its first record)."""
    from sensorops import kafka_io, storage

    for topic in (cfg.source_topic, cfg.features_topic, cfg.aggregates_topic, cfg.dead_letter_topic):
        kafka_io.ensure_topic(topic, servers=cfg.bootstrap_servers)
    if cfg.archive_path.startswith("s3://"):
        bucket = cfg.archive_path[5:].split("/", 1)[0]
        storage.ensure_buckets((bucket, config.CHECKPOINT_BUCKET))


def rest_address(url: str) -> str:
    """`host:port` of a Flink REST URL, as `flink run -m` takes it (so a client anywhere reaches that cluster)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        raise UserError(f"FLINK_REST_URL {url!r} names no host; set it like http://127.0.0.1:8081")
    return f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def submit(cfg: StreamJobConfig | None = None, *, fresh: bool = False, timeout: float = 180.0) -> tuple[str, bool]:
    """Submit the job to the session cluster unless a job of the same name is active.

    Resumes from the checkpoint recorded when the previous run was cancelled, unless `fresh`.
    Returns (job id, whether a new job was started).
    """
    import fcntl

    from sensorops.platform import local

    cfg = cfg or StreamJobConfig()
    lock_path = _state_file(cfg.name).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two submissions at once must not both start a job
        existing = find_active(cfg.name)
        if existing:
            log.info("job %s is already running as %s", cfg.name, existing)
            return existing, False
        prepare(cfg)
        resume = "" if fresh else resume_point(cfg.name)
        args = ["run", "-d", "-m", rest_address(config.load().flink_rest_url)]
        args += ["-s", resume, "--allowNonRestoredState"] if resume else []
        args += ["-py", str(JOB_FILE), "--config-json", cfg.to_json()]
        log.info("submitting %s%s", cfg.name, f" from {resume}" if resume else "")
        done = local.flink_cli(*args, timeout=timeout)
        job_id = next((line.rsplit(" ", 1)[-1] for line in done.stdout.splitlines() if "JobID" in line), "")
        if not job_id:
            raise UserError(f"the Flink client submitted {cfg.name} but printed no job id: {done.stdout[-500:]}")
        _remember(cfg.name, job_id=job_id, config=json.loads(cfg.to_json()), resume_from="")
        return job_id, True


def wait_running(job_id: str, timeout: float = 90.0) -> JobStatus:
    """Wait until every task of the job runs (so it reads its source); raise if it fails first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = _rest(f"/jobs/{job_id}")
        if detail["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise UserError(f"job {job_id} is {detail['state']}; see `sensorops stream status` and the Flink UI")
        states = {v["status"] for v in detail.get("vertices", [])}
        if detail["state"] == "RUNNING" and states == {"RUNNING"}:
            return status(job_id=job_id)
        time.sleep(1)
    raise UserError(f"job {job_id} did not start within {timeout:.0f} s")


def cancel(name: str = DEFAULT_JOB_NAME, timeout: float = 60.0) -> JobStatus | None:
    """Cancel the active job called `name`, remembering its latest checkpoint for the next submission.

    Returns its final status, or None when nothing was running.
    """
    job_id = find_active(name)
    if not job_id:
        return None
    _rest(f"/jobs/{job_id}", method="PATCH", params={"mode": "cancel"})
    deadline = time.monotonic() + timeout
    final = status(job_id=job_id)
    while final.state not in ("CANCELED", "FAILED", "FINISHED") and time.monotonic() < deadline:
        time.sleep(0.5)
        final = status(job_id=job_id)
    if final.last_checkpoint:
        _remember(name, resume_from=final.last_checkpoint)
    log.info("cancelled %s (%s); resume point %s", name, job_id, final.last_checkpoint or "none")
    return final


# -- reading what the job wrote ---------------------------------------------------------------------------------


def delete_archive(archive_path: str) -> int:
    """Delete every object under an S3 archive prefix (for tests and benchmarks); return how many."""
    from minio.deleteobjects import DeleteObject

    from sensorops import storage

    bucket, _, prefix = archive_path.removeprefix("s3://").partition("/")
    if not prefix:
        raise UserError("refusing to delete a whole bucket; give a prefix such as s3://bucket/tests/run-1")
    client = storage.client()
    names = [o.object_name for o in client.list_objects(bucket, prefix=prefix.rstrip("/") + "/", recursive=True)]
    errors = list(client.remove_objects(bucket, (DeleteObject(n) for n in names)))
    if errors:
        raise UserError(f"could not delete {len(errors)} objects under {archive_path}: {errors[0]}")
    return len(names)


def read_archive(kind: str = "features", archive_path: str = f"s3://{config.ARCHIVE_BUCKET}") -> pd.DataFrame:
    """The committed Parquet archive (`kind` 'features' or 'raw') as a DataFrame, `event_time` in UTC.

    For 'features' the columns are exactly `features.FEATURE_COLUMNS` (the `hour` partition becomes the column).
    Only committed files are read: Flink names in-progress files with a leading dot, which readers skip.
    """
    import pyarrow.dataset as ds

    from sensorops import storage

    if kind not in ("features", "raw"):
        raise UserError(f"the archive holds 'features' and 'raw', not {kind!r}")
    root = f"{archive_path.removeprefix('s3://').rstrip('/')}/{kind}"
    fs = storage.pyarrow_filesystem()
    from pyarrow import fs as pafs

    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return pd.DataFrame(columns=features.FEATURE_COLUMNS if kind == "features" else [])
    frame = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive").to_table().to_pandas()
    for column in ("event_time", "kafka_timestamp"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ms, UTC]")
    frame["hour"] = frame["hour"].astype("int32")
    if kind == "features":
        frame = frame[features.FEATURE_COLUMNS]
    return frame


def batch_start(duration_s: float, topic: str = config.SENSOR_TOPIC, tail: int = 50) -> pd.Timestamp:
    """Event time at which a new batch of `duration_s` should begin so that none of it is late.

    Normally the batch ends now. If the topic already holds later event times (a batch produced ahead of the clock,
    or one that ended now a moment ago), the job's watermark is past "now minus the duration": the batch then begins
    just after the newest event time among the last `tail` records of each partition.
    """
    from kafka import KafkaConsumer, TopicPartition

    start = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=duration_s)
    consumer = KafkaConsumer(bootstrap_servers=config.load().kafka_bootstrap_servers, group_id=None,
                             enable_auto_commit=False)  # fmt: skip
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not tps:
            return start
        consumer.assign(tps)
        ends, firsts = consumer.end_offsets(tps), consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(firsts[tp], ends[tp] - tail))
        newest = None
        deadline = time.monotonic() + 10
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    try:
                        stamp = pd.Timestamp(json.loads(r.value)["timestamp"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a malformed record: the job dead-letters it, it moves no watermark
                    newest = stamp if newest is None else max(newest, stamp)
    finally:
        consumer.close()
    return start if newest is None else max(start, newest.ceil("s") + pd.Timedelta(seconds=1))


def read_topic(
    topic: str, max_records: int = 100_000, timeout_s: float = 20.0, committed_only: bool = True,
    last: int | None = None,
) -> list[dict[str, Any]]:
    """JSON records of a topic the job writes, with their partition, offset and timestamp.

    From the beginning, or only about the `last` records (split evenly over the partitions).
    `committed_only` reads with `isolation_level=read_committed`: rows of exactly-once sinks appear only once
    their checkpoint completes. Stops at the end of the topic, at `max_records` or after `timeout_s`.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=config.load().kafka_bootstrap_servers, group_id=None, enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )  # fmt: skip
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or [])
        if not partitions:
            raise UserError(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        if last is not None:
            starts = consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(starts[tp], ends[tp] - -(-last // len(tps))))
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < max_records and time.monotonic() < deadline:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    value = json.loads(r.value) if r.value else {}
                    out.append({**value, "_partition": r.partition, "_offset": r.offset, "_timestamp": r.timestamp})
        return out[:max_records]
    finally:
        consumer.close()


def features_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Feature rows read from the features topic as a DataFrame with the dtypes of `compute_features`."""
    frame = pd.DataFrame(records).reindex(columns=features.FEATURE_COLUMNS)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601").astype("datetime64[ms, UTC]")
    return frame
