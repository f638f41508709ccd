"""The stream job: Kafka sensor events -> features, window aggregates, dead letters and an S3 archive.

One job per channel profile (`StreamJobConfig.profile`): the default profile's is the building-climate job as it
always was; any other profile's reads its own topic, checks its flat events against its channels and their ranges
(`profiles.event_format`), computes its features (`features.for_profile`) and writes its own topics and archive
(`profiles.names`), with per-sensor aggregates of its channels (the default's per-building ones need a location).
Each job takes one task slot at parallelism 1, so several profiles' jobs run side by side on the session cluster.

The job is Flink SQL, assembled here (`statements`), that decodes each record once: a Java UDF built by the project
(`stream.native`) takes every record it is certain of, and one Python UDF (`parse_events`, vectorized: Flink hands it
batches of records) reads the rest, deciding every dead letter and its reason, so the rules stay in `events`. It is
run by `sensorops/jobs/sensor_stream.py` inside the Flink client. This module only defines the job; `stream.control`
submits it to the session cluster through `sensorops.flink`.

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
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sensorops import archive, config, events, features, kafka_io, profiles
from sensorops.errors import UserError
from sensorops.stream import native
from sensorops.stream.tables import (
    JobSettings,
    job_configuration,
    kafka_sink,
    kafka_source,
    table_environment,
    with_options,
)

DEFAULT_JOB_NAME = "sensorops-stream"
GUARANTEES = ("exactly-once", "at-least-once", "none")


@dataclass
class StreamJobConfig(JobSettings):
    """Everything that parameterises one deployment of the stream job. Its keyed state is a sensor's recent
    readings: a sensor silent for longer than `state_ttl_s` starts its rolling features afresh."""

    profile: str | profiles.Profile = profiles.DEFAULT_NAME
    """The channel profile: the path of its YAML file (or a `profiles.Profile`), or the default profile's name. It
    decides what a valid event is and the features, and names the job, its topics and its archive when they are left
    empty (`profiles.names`: `sensorops-stream-NAME`, `sensor-events.NAME`, ..., `<archive root>/profiles/NAME`)."""
    profile_spec: dict[str, Any] = field(default_factory=dict)
    """The profile's YAML form, read once where the config is made: the job on the cluster never reads the file."""
    name: str = ""
    source_topic: str = ""
    features_topic: str = ""
    aggregates_topic: str = ""
    dead_letter_topic: str = ""
    archive_path: str = ""
    """Raw events go to `<archive_path>/raw/`, features to `<archive_path>/features/`."""
    window_minutes: int = 1
    features_guarantee: str = "at-least-once"
    """Guarantee of the features topic: low latency for real-time scoring (see the module docstring)."""
    kafka_guarantee: str = "exactly-once"
    """Guarantee of the aggregates and dead-letter sinks."""
    max_value_bytes: int = events.MAX_VALUE_BYTES
    """A larger record value is a dead letter (`too_large`), so that no sink ever fails on a record's size."""
    max_key_bytes: int = events.MAX_KEY_BYTES
    """A larger record key is a dead letter (`too_large`)."""
    archive: bool = True
    aggregates: bool = True
    bounded: bool = False
    """Read only what the source topic holds when the job starts, then finish (a benchmark draining a backlog)."""
    native_parse: bool = True
    """Decode records with the project's Java UDF (`stream.native`) where it is certain of the outcome, and only the
    rest (dead letters, odd values) with the Python UDF, which stays the one definition of what is valid."""
    native_jar: str = ""
    """The UDF's jar as a URL the job's client reads (`pipeline.jars`): by default the one `stream.submit` builds
    from java/; a cluster image names its own copy."""
    python_bundle_size: int = 10_000
    """Records the source hands the Python worker before it waits for all of them to come back (Flink's
    `python.fn-execution.bundle.size`, 1,000 by default; a bundle also ends after 50 ms, `bundle.time`). At 1,000 the
    source spent most of its time waiting (thread dumps): draining a 400,000-event backlog on 2 cores, 6,973 events/s
    against 9,962 at 10,000, within the same quarter of an hour, when the same job with no Python at all ran 10,340."""

    def __post_init__(self) -> None:
        for guarantee in (self.features_guarantee, self.kafka_guarantee):
            if guarantee not in GUARANTEES:
                raise UserError(f"unknown delivery guarantee {guarantee!r}; choose one of {', '.join(GUARANTEES)}")
        if self.max_value_bytes < 1_000:
            raise UserError(f"max_value_bytes {self.max_value_bytes} is smaller than one event (about 400 bytes)")
        if self.max_key_bytes < 1:
            raise UserError(f"max_key_bytes must be at least 1, got {self.max_key_bytes}")
        if self.python_bundle_size < 1:
            raise UserError(f"python_bundle_size must be at least 1, got {self.python_bundle_size}")
        profile = self._read_profile()
        self.profile_spec = {} if profile.is_default else profile.to_dict()
        self.feature_set = features.for_profile(profile)  # not a field: derived, and checked here
        self.event_format = profiles.event_format(profile)
        self.name = self.name or profiles.per_profile(DEFAULT_JOB_NAME, profile)
        self.source_topic = self.source_topic or profiles.sensor_topic(profile)
        self.features_topic = self.features_topic or profiles.topic(config.FEATURES_TOPIC, profile)
        self.aggregates_topic = self.aggregates_topic or profiles.topic(config.AGGREGATES_TOPIC, profile)
        self.dead_letter_topic = self.dead_letter_topic or profiles.topic(config.DEAD_LETTER_TOPIC, profile)
        own = "/".join(p for p in (archive.ROOT, profiles.archive_prefix(profile)) if p)
        self.archive_path = (self.archive_path or own).rstrip("/")
        self.native_jar = self.native_jar or (native.jar_url() if self.native_parse else "")
        super().__post_init__()

    def _read_profile(self) -> profiles.Profile:
        if isinstance(self.profile, profiles.Profile):
            self.profile_spec, self.profile = self.profile.to_dict(), self.profile.name
        self.profile = str(self.profile or profiles.DEFAULT_NAME)
        if self.profile_spec:
            return profiles.from_dict(self.profile_spec, where=f"the profile of {self.name or 'the stream job'}")
        return profiles.default() if self.profile == profiles.DEFAULT_NAME else profiles.load(self.profile)

    @property
    def channel_profile(self) -> profiles.Profile:
        return self.feature_set.profile

    @classmethod
    def scratch(cls, kind: str, tag: str, **overrides: Any) -> StreamJobConfig:
        """A job with topics and an archive of its own (`test-<tag>-events`, ...), for tests and benchmarks."""
        return cls(
            name=f"{kind}-stream-{tag}",
            source_topic=f"{kind}-{tag}-events",
            features_topic=f"{kind}-{tag}-features",
            aggregates_topic=f"{kind}-{tag}-aggregates",
            dead_letter_topic=f"{kind}-{tag}-dlq",
            archive_path=f"{archive.ROOT}/{kind}/{tag}",
            **overrides,
        )

    @property
    def topics(self) -> tuple[str, str, str, str]:
        return self.source_topic, self.features_topic, self.aggregates_topic, self.dead_letter_topic


# -- the job in SQL --------------------------------------------------------------------------------------------


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
        # A writer of its own, not chained to the source or the feature sink: at each checkpoint it closes its files
        # on S3, and chained it stalled them (at-least-once feature latency p99 713 -> 499 ms at 1,000 events/s).
        "sink.shuffle-by-partition.enable": "true",
    }


FEATURE_TYPES = {
    "sensor_id": "STRING",
    "event_time": "TIMESTAMP_LTZ(3)",
    "temperature": "DOUBLE",
    "humidity": "DOUBLE",
    "pressure": "DOUBLE",
    "is_anomaly": "BOOLEAN",
    "anomaly_type": "STRING",
    "building": "STRING",
    "floor": "INT",
    "room": "STRING",
    "device_model": "STRING",
    "firmware_version": "STRING",
    "battery_level": "DOUBLE",
    "hour": "INT",
    "day_of_week": "INT",
    "is_weekend": "BOOLEAN",
    "is_business_hours": "BOOLEAN",
    "trend_category": "STRING",
}
"""Flink types of the feature columns; the rest are DOUBLE."""


PROFILE_TYPES = {
    "sensor_id": "STRING",
    "event_time": "TIMESTAMP_LTZ(3)",
    "is_anomaly": "BOOLEAN",
    "anomaly_type": "STRING",
}
"""Flink types of the columns of any other profile's feature table that are not DOUBLE."""


def column_types(feature_set: features.FeatureSet) -> dict[str, str]:
    """Flink types of a feature table's columns that are not DOUBLE."""
    return FEATURE_TYPES if feature_set.profile.is_default else PROFILE_TYPES


def feature_schema(exclude: tuple[str, ...] = (), feature_set: features.FeatureSet | None = None) -> str:
    """The columns of a feature table (the default profile's unless `feature_set` is given) as Flink SQL."""
    feature_set = feature_set or features.for_profile()
    types = column_types(feature_set)
    return ",\n  ".join(f"`{c}` {types.get(c, 'DOUBLE')}" for c in feature_set.columns if c not in exclude)


PARSED_FIELDS = ("reason", "dead_letter", *events.READ_FIELDS)
"""What `parse_events` returns for each record: the dead-letter reason and what the dead letter keeps of the value
(`events.dead_letter_text`), or the flat event (both NULL). For another profile's events, `fmt.fields` after the
first two."""

JOB_COLUMNS = ("reason", "dead_letter", "event_ms", "proc_time", "prev_event_ms", "payload", "is_late", "dt", "hour")
JOB_COLUMNS += ("kafka_partition", "kafka_offset", "kafka_timestamp")
"""Columns of the job's own beside a profile's channels, which no channel may be called (`profiles.model.RESERVED`)."""


def parse_events(
    payloads: pd.Series,
    keys: pd.Series,
    max_bytes: int = events.MAX_VALUE_BYTES,
    max_key_bytes: int = events.MAX_KEY_BYTES,
    fmt: events.EventFormat = events.DEFAULT_FORMAT,
) -> pd.DataFrame:
    """The job's one Python UDF, vectorized: decode and check a batch of raw values, each once
    (`events.read_events`), as a frame of `PARSED_FIELDS`, one row per value.

    Values and keys arrive as bytes, so that no record (not UTF-8, too large, not JSON) can fail the job: each becomes
    a dead letter with its reason. Flink hands the UDF a batch at a time (Arrow), not a record at a time: against the
    same rules in a record-at-a-time UDF, in alternating runs draining a 400,000-event backlog (bundles of 10,000),
    7,344 and 8,293 events/s against 5,659 and 6,299, with a quarter less CPU in the Python worker.
    """
    values, no_event = payloads.tolist(), (None,) * len(fmt.fields)
    reasons, rows = events.read_events(values, keys.tolist(), max_bytes, max_key_bytes, fmt)
    dead = [None if reason is None else events.dead_letter_text(v, max_bytes) for reason, v in zip(reasons, values)]
    columns = zip(*(no_event if row is None else row for row in rows)) if rows else [()] * len(no_event)
    frame = {"reason": reasons, "dead_letter": dead, **dict(zip(fmt.fields, columns))}
    return pd.DataFrame({name: pd.Series(column, dtype=object) for name, column in frame.items()})


DEAD_LETTER_METRIC = "deadLetters"
"""The UDF's dead letters per `reason`: `flink_taskmanager_job_task_operator_reason_deadLetters` in Prometheus."""


def parse_events_udf(cfg: StreamJobConfig) -> Any:
    """`parse_events` as Flink's pandas UDF, counting the dead letters it finds per reason in Flink's metrics."""
    from pyflink.table.udf import ScalarFunction, udf

    class ParseEvents(ScalarFunction):
        def open(self, function_context: Any) -> None:
            group = function_context.get_metric_group()
            self.dead = {
                r: group.add_group("reason", r).counter(DEAD_LETTER_METRIC) for r in events.DEAD_LETTER_REASONS
            }

        def eval(self, payloads: pd.Series, keys: pd.Series) -> pd.DataFrame:
            parsed = parse_events(payloads, keys, cfg.max_value_bytes, cfg.max_key_bytes, cfg.event_format)
            for reason, count in parsed["reason"].value_counts().items():
                self.dead[reason].inc(int(count))
            return parsed

    types = {"reason": "STRING", "dead_letter": "STRING", "event_ms": "BIGINT", **column_types(cfg.feature_set)}
    fields = ", ".join(f"`{f}` {types.get(f, 'DOUBLE')}" for f in ("reason", "dead_letter", *cfg.event_format.fields))
    return udf(ParseEvents(), result_type=f"ROW<{fields}>", func_type="pandas")


@dataclass
class JobSql:
    """The job as SQL, in the order `run_job` applies it."""

    source: str
    """The Kafka source table: each value as a raw string, with its partition, offset and timestamp."""
    decode: str | None
    """With `native_parse`, the query that adds the Java UDF's verdict `j` (the flat event, or NULL when the Python UDF
    must decide) to each record; `run_job` materialises it once as the view `decoded`, which `parse` reads."""
    parse: str
    """The query that gives every record its decoded fields or its dead-letter reason, once: the rows the Java UDF
    accepted, and the `parse_events` UDF's reading of the rest (SQL's JSON functions would parse the payload again for
    each field they extract). `run_job` gives its rows event time and a watermark: the view `parsed`."""
    watermark: str
    """The watermark of `parsed`: bounded out-of-orderness on `event_time`."""
    views: list[str]
    """Views and sink tables over `parsed`."""
    inserts: list[str]
    """The INSERTs, which run together as one Flink job."""


def statements(cfg: StreamJobConfig) -> JobSql:
    """The job's SQL: source, parse, views and sinks, inserts."""
    # Bytes: decoding them is the UDF's job, where a bad value (or an oversized key) becomes a dead letter.
    raw = {"value.format": "raw", "key.format": "raw", "key.fields": "record_key", "value.fields-include": "EXCEPT_KEY"}
    source = kafka_source(cfg, cfg.source_topic, **raw)
    if cfg.bounded:
        source["scan.bounded.mode"] = "latest-offset"
    source_ddl = f"""CREATE TEMPORARY TABLE sensor_source (
  record_key BYTES,
  payload BYTES,
  kafka_partition INT METADATA FROM 'partition' VIRTUAL,
  kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  kafka_timestamp TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
) {with_options(source)}"""
    decode, parse = _parse_sql(cfg)
    feature_set = cfg.feature_set
    ddl = [
        f"""CREATE TEMPORARY VIEW events AS
SELECT {", ".join(f"`{c}`" for c in feature_set.event_columns)}, event_ms, proc_time,
  CAST(payload AS STRING) AS payload, kafka_partition, kafka_offset, kafka_timestamp,
  COALESCE(event_time < CURRENT_WATERMARK(event_time), FALSE) AS is_late
FROM parsed WHERE reason IS NULL""",
    ]
    ddl.append(f"CREATE TEMPORARY VIEW feature_rows AS {feature_set.flink_sql('events')}")
    ddl.append(f"""CREATE TEMPORARY TABLE dead_letter_sink (
  payload STRING, reason STRING, kafka_partition INT, kafka_offset BIGINT, kafka_timestamp TIMESTAMP_LTZ(3)
) {kafka_sink(cfg.dead_letter_topic, cfg.bootstrap_servers, cfg.kafka_guarantee, f"{cfg.name}-dlq")}""")
    features_sink = kafka_sink(
        cfg.features_topic, cfg.bootstrap_servers, cfg.features_guarantee, f"{cfg.name}-features", key="sensor_id"
    )
    ddl.append(
        f"CREATE TEMPORARY TABLE features_sink (\n  {feature_schema(feature_set=feature_set)}\n) {features_sink}"
    )
    inserts = [
        "INSERT INTO dead_letter_sink SELECT dead_letter, reason, kafka_partition, kafka_offset, kafka_timestamp "
        "FROM parsed WHERE reason IS NOT NULL",
        "INSERT INTO features_sink SELECT * FROM feature_rows",
    ]
    if cfg.archive:
        partitions = archive.partition_sql()
        declared, partitioned_by = archive.partition_columns_sql()
        ddl.append(f"""CREATE TEMPORARY TABLE raw_archive (
  sensor_id STRING, event_time TIMESTAMP_LTZ(3), payload STRING, kafka_partition INT, kafka_offset BIGINT,
  kafka_timestamp TIMESTAMP_LTZ(3), is_late BOOLEAN, {declared}
) PARTITIONED BY ({partitioned_by}) {with_options(_parquet_sink(f"{cfg.archive_path}/raw"))}""")
        ddl.append(f"""CREATE TEMPORARY TABLE features_archive (
  {feature_schema(exclude=("hour",), feature_set=feature_set)},
  {declared}
) PARTITIONED BY ({partitioned_by}) {with_options(_parquet_sink(f"{cfg.archive_path}/features"))}""")
        columns = ", ".join(f"`{c}`" for c in feature_set.columns if c != "hour")
        inserts += [
            "INSERT INTO raw_archive SELECT sensor_id, event_time, payload, kafka_partition, kafka_offset, "
            f"kafka_timestamp, is_late, {partitions} FROM events",
            f"INSERT INTO features_archive SELECT {columns}, {partitions} FROM feature_rows",
        ]
    if cfg.aggregates:
        ddl.append(_aggregates_sink(cfg))
        inserts += _aggregates(cfg)
    watermark = f"event_time - INTERVAL '{cfg.watermark_delay_s:g}' SECOND"
    return JobSql(source_ddl, decode, parse, watermark, ddl, inserts)


def _parse_sql(cfg: StreamJobConfig) -> tuple[str | None, str]:
    """The queries that decode each record once: the Java UDF's (`JobSql.decode`, with `native_parse`), then the rows
    it accepted beside the Python UDF's reading of all the others (`JobSql.parse`)."""
    # The UDFs get no more of a value (or key) than decides its fate: a run of huge records cannot fill a batch.
    value, key = f"VARBINARY({events.kept_bytes(cfg.max_value_bytes)})", f"VARBINARY({cfg.max_key_bytes + 1})"
    payload, record_key = f"CAST(payload AS {value})", f"CAST(record_key AS {key})"
    raw = f"{payload}, {record_key}"
    columns = "payload, kafka_partition, kafka_offset, kafka_timestamp"
    if not cfg.native_parse:
        return None, f"SELECT {columns}, e.*\nFROM (SELECT *, parse_events({raw}) AS e FROM sensor_source)"
    decode = f"SELECT record_key, {columns}, {native.call_sql(payload, record_key, cfg)} AS j FROM sensor_source"
    accepted = native.accepted_sql("j", cfg.event_format)
    parse = (
        f"SELECT {columns}, CAST(NULL AS STRING) AS reason, CAST(NULL AS STRING) AS dead_letter, {accepted}\n"
        "FROM decoded WHERE j IS NOT NULL\nUNION ALL\n"
        f"SELECT {columns}, e.*\nFROM (SELECT *, parse_events({raw}) AS e FROM decoded WHERE j IS NULL)"
    )
    return decode, parse


def _aggregates_sink(cfg: StreamJobConfig) -> str:
    q = _quoted(cfg.channel_profile)
    sink = kafka_sink(cfg.aggregates_topic, cfg.bootstrap_servers, cfg.kafka_guarantee, f"{cfg.name}-aggregates", "key")
    return f"""CREATE TEMPORARY TABLE aggregates_sink (
  `level` STRING, `key` STRING, window_start TIMESTAMP_LTZ(3), window_end TIMESTAMP_LTZ(3),
  event_count BIGINT, anomaly_count BIGINT,
  {", ".join(f"{q(f'{c}_{s}')} DOUBLE" for c in cfg.feature_set.channels for s in ("min", "max", "mean", "std"))}
) {sink}"""


def _aggregates(cfg: StreamJobConfig) -> list[str]:
    """Tumbling windows per sensor (and, for the default profile, per building): count, anomalies, and each channel's
    minimum, maximum, mean and population standard deviation."""
    q = _quoted(cfg.channel_profile)
    stats = ", ".join(
        f"MIN({c}), MAX({c}), AVG({c}), SQRT(GREATEST(AVG({c} * {c}) - AVG({c}) * AVG({c}), 0E0))"
        for c in map(q, cfg.feature_set.channels)
    )
    window = f"TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '{cfg.window_minutes}' MINUTES))"
    levels = (
        (("sensor", "sensor_id"), ("building", "building"))
        if cfg.channel_profile.is_default
        else [("sensor", "sensor_id")]
    )
    return [
        f"INSERT INTO aggregates_sink SELECT '{level}', {key}, window_start, window_end, "
        f"COUNT(*), COUNT(*) FILTER (WHERE is_anomaly), {stats} "
        f"FROM {window} WHERE {key} IS NOT NULL GROUP BY {key}, window_start, window_end"
        for level, key in levels
    ]


def _quoted(profile: profiles.Profile) -> Any:
    """Names as SQL identifiers: another profile's channels may be SQL keywords (SKAB's `current`), so they are
    quoted; the default profile's SQL stays as it was."""
    return (lambda name: name) if profile.is_default else (lambda name: f"`{name}`")


def run_job(cfg: StreamJobConfig) -> None:
    """Build the job and hand it to the cluster (runs inside `flink run -py`, not in the caller's process)."""
    from pyflink.table import Schema

    env = table_environment({"python.fn-execution.bundle.size": str(cfg.python_bundle_size), **job_configuration(cfg)})
    sql = statements(cfg)
    env.execute_sql(kafka_io.with_password(sql.source))
    env.create_temporary_function("parse_events", parse_events_udf(cfg))
    if sql.decode:
        env.get_config().set("pipeline.jars", cfg.native_jar)
        env.execute_sql(native.create_function_sql())
        # Through a DataStream, so that reading several fields of `j` does not call the UDF once per field.
        env.create_temporary_view("decoded", env.from_data_stream(env.to_data_stream(env.sql_query(sql.decode))))
    # SQL declares watermarks only on tables, so the decoded rows pass through a stream that gets one.
    timed = Schema.new_builder().column_by_expression("event_time", "TO_TIMESTAMP_LTZ(COALESCE(event_ms, 0), 3)")
    timed = timed.column_by_expression("proc_time", "PROCTIME()").watermark("event_time", sql.watermark).build()
    env.create_temporary_view("parsed", env.from_data_stream(env.to_data_stream(env.sql_query(sql.parse)), timed))
    for statement in sql.views:
        env.execute_sql(kafka_io.with_password(statement))
    statement_set = env.create_statement_set()
    for insert in sql.inserts:
        statement_set.add_insert_sql(insert)
    statement_set.execute()


def parse_job_args(argv: list[str]) -> StreamJobConfig:
    parser = argparse.ArgumentParser(prog="sensor_stream")
    parser.add_argument("--config-json", required=True)
    return StreamJobConfig.from_json(parser.parse_args(argv).config_json)
