"""Running the stream job on the session cluster: its topics and buckets, submission, status and cancellation.

The generic part (REST, the Flink client, resume points) is `sensorops.flink`; this module adds what is the stream
job's own: the job file, the topics and buckets it needs, and the names of its sinks in the status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sensorops import archive, config, flink, kafka_io, storage
from sensorops.stream import native
from sensorops.stream.job import DEFAULT_JOB_NAME, StreamJobConfig

JOB_FILE = Path(__file__).parents[1] / "jobs" / "sensor_stream.py"


def prepare(cfg: StreamJobConfig) -> None:
    """Create the job's topics and buckets if missing (the job would otherwise fail on its first record), and build
    its Java UDF if java/ changed."""
    for topic in cfg.topics:
        kafka_io.ensure_topic(topic, servers=cfg.bootstrap_servers)
    if cfg.native_parse and cfg.native_jar == native.jar_url():
        native.build_jar()  # a few stat calls unless java/ changed
    if cfg.archive_path.startswith("s3://"):
        bucket = cfg.archive_path[5:].split("/", 1)[0]
        storage.ensure_buckets((bucket, config.CHECKPOINT_BUCKET))


def submit(cfg: StreamJobConfig | None = None, *, fresh: bool = False, timeout: float = 180.0) -> tuple[str, bool]:
    """Submit the job unless one of the same name is active; (job id, whether a new job was started).

    Resumes from the checkpoint recorded when the previous run was cancelled, unless `fresh`.
    """
    cfg = cfg or StreamJobConfig()
    prepare(cfg)
    return flink.submit(JOB_FILE, cfg.name, ["--config-json", cfg.to_json()], fresh=fresh, timeout=timeout)


def _archive_writer(vertex: dict[str, Any]) -> str:
    """The job's two file writers, each a task of its own: the one the feature query's OVER windows feed archives
    features, the other raw events."""
    return "features_archive" if any("OverAggregate" in name for name in vertex["inputs"]) else "raw_archive"


def status(name: str = DEFAULT_JOB_NAME, job_id: str | None = None) -> flink.JobStatus:
    """State, records read and written per sink, and checkpoints of the newest job called `name` (or `job_id`)."""
    return flink.status(name, job_id, file_writer=_archive_writer)


def cancel(name: str = DEFAULT_JOB_NAME, timeout: float = 60.0) -> flink.JobStatus | None:
    """Cancel the job, remembering its latest checkpoint for the next `submit`; None when nothing was running."""
    return flink.cancel(name, timeout)


def remove(cfg: StreamJobConfig) -> None:
    """Cancel the job and delete its topics, archive and checkpoints: the end of a scratch job
    (`StreamJobConfig.scratch`)."""
    cancel(cfg.name)
    flink.forget(cfg.name)
    for topic in cfg.topics:
        kafka_io.delete_topic(topic, servers=cfg.bootstrap_servers)
    archive.delete(cfg.archive_path)
