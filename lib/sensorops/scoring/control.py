"""Running the scoring job on the session cluster: its topics, submission, status and cancellation
(the generic part is `sensorops.flink`)."""

from __future__ import annotations

from pathlib import Path

from sensorops import flink, kafka_io, storage
from sensorops.config import CHECKPOINT_BUCKET
from sensorops.scoring.job import DEFAULT_JOB_NAME, ScoringJobConfig

JOB_FILE = Path(__file__).parents[1] / "jobs" / "sensor_scoring.py"


def prepare(cfg: ScoringJobConfig) -> None:
    """Create the job's topics and the checkpoint bucket if missing."""
    for topic in cfg.topics:
        kafka_io.ensure_topic(topic, servers=cfg.bootstrap_servers)
    storage.ensure_buckets((CHECKPOINT_BUCKET,))


def submit(cfg: ScoringJobConfig | None = None, *, fresh: bool = False, timeout: float = 180.0) -> tuple[str, bool]:
    """Submit the job unless one of the same name is active; (job id, whether a new job was started)."""
    cfg = cfg or ScoringJobConfig()
    prepare(cfg)
    return flink.submit(JOB_FILE, cfg.name, ["--config-json", cfg.to_json()], fresh=fresh, timeout=timeout)


def status(name: str = DEFAULT_JOB_NAME, job_id: str | None = None) -> flink.JobStatus:
    return flink.status(name, job_id)


def cancel(name: str = DEFAULT_JOB_NAME, timeout: float = 60.0) -> flink.JobStatus | None:
    return flink.cancel(name, timeout)


def remove(cfg: ScoringJobConfig) -> None:
    """Cancel the job and delete its topics and checkpoints (the end of a scratch job)."""
    cancel(cfg.name)
    flink.forget(cfg.name)
    for topic in cfg.topics:
        kafka_io.delete_topic(topic, servers=cfg.bootstrap_servers)
