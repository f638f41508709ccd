"""The stream job: Kafka sensor events -> features, window aggregates, dead letters and an S3 archive.

`job` defines it (Flink SQL and one Python UDF) from the building blocks in `tables`, `control` runs it on the
session cluster, `topics` feeds and reads its topics. What it archives is read with `sensorops.archive`. There is one
job per channel profile (`StreamJobConfig(profile=...)`), each with its own topics and archive prefix.
"""

from sensorops.stream.control import JOB_FILE, cancel, prepare, remove, status, submit
from sensorops.stream.job import (
    DEFAULT_JOB_NAME,
    FEATURE_TYPES,
    GUARANTEES,
    PARSED_FIELDS,
    JobSql,
    StreamJobConfig,
    parse_events,
    parse_job_args,
    run_job,
    statements,
)
from sensorops.stream.tables import job_configuration
from sensorops.stream.topics import batch_start, features_frame

__all__ = [
    "DEFAULT_JOB_NAME",
    "FEATURE_TYPES",
    "GUARANTEES",
    "JOB_FILE",
    "PARSED_FIELDS",
    "JobSql",
    "StreamJobConfig",
    "batch_start",
    "cancel",
    "features_frame",
    "job_configuration",
    "parse_events",
    "parse_job_args",
    "prepare",
    "remove",
    "run_job",
    "statements",
    "status",
    "submit",
]
