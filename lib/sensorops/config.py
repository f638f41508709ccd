"""Settings, read from the environment under the standard names, with local defaults.

Precedence: the process environment, then the repository's git-ignored `.env` (written by `make up` with the
generated credentials), then the local platform's defaults. Point the notebooks at another deployment (a cluster,
an existing MinIO) by setting the same variables.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository checkout (the package is installed editable from `lib/`)."""

ENV_FILE = ROOT / ".env"

# Topics and buckets of the pipeline.
SENSOR_TOPIC = "sensor-events"
FEATURES_TOPIC = "sensor-features"
AGGREGATES_TOPIC = "sensor-aggregates"
DEAD_LETTER_TOPIC = "sensor-events-dlq"
SCORES_TOPIC = "sensor-scores"
ALERTS_TOPIC = "sensor-alerts"
MODEL_METRICS_TOPIC = "sensor-model-metrics"
ARCHIVE_BUCKET = "sensor-archive"
MLFLOW_BUCKET = "mlflow-artifacts"
CHECKPOINT_BUCKET = "flink-checkpoints"
REPORT_BUCKET = "pipeline-reports"
BUCKETS = (ARCHIVE_BUCKET, MLFLOW_BUCKET, CHECKPOINT_BUCKET, REPORT_BUCKET)

DEFAULTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    # How Kafka clients authenticate: the local broker takes PLAINTEXT; the cluster's takes SASL_PLAINTEXT with
    # SCRAM-SHA-512 and one Kafka user per workload (deploy/k8s).
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "",
    "KAFKA_SASL_PASSWORD": "",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    "FLINK_REST_URL": "http://127.0.0.1:8081",
    # Where the scoring job's Flink answers: the same session cluster locally, its own cluster on Kubernetes.
    "FLINK_SCORING_REST_URL": "",
    # Who starts the Flink jobs: `session` (the pipeline submits them to the session cluster) or `operator` (the
    # Flink Kubernetes Operator runs each FlinkDeployment; the pipeline only checks that they run).
    "SENSOROPS_FLINK_JOBS": "session",
    "AIRFLOW_API_URL": "http://127.0.0.1:8080",
    "AIRFLOW_USERNAME": "admin",
    "AIRFLOW_PASSWORD": "",
    "SENSOROPS_HOME": str(ROOT / ".platform"),
}


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """Parse a `KEY=value` file; missing file means no values. Read again only when the file changes."""
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    return dict(_parse_env_file(path, stamp))


@lru_cache(maxsize=4)
def _parse_env_file(path: Path, stamp: int) -> tuple[tuple[str, str], ...]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return tuple(values.items())


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str = field(repr=False)
    aws_endpoint_url: str
    aws_access_key_id: str
    aws_secret_access_key: str = field(repr=False)
    aws_region: str
    mlflow_tracking_uri: str
    flink_rest_url: str
    flink_scoring_rest_url: str
    flink_jobs: str
    airflow_api_url: str
    airflow_username: str
    airflow_password: str = field(repr=False)
    home: Path

    @property
    def s3_secure(self) -> bool:
        return self.aws_endpoint_url.startswith("https://")

    @property
    def s3_host(self) -> str:
        """The endpoint as `host:port`, the form the minio SDK takes."""
        return self.aws_endpoint_url.split("://", 1)[-1].rstrip("/")


ENDPOINT_FIELDS = {
    "kafka": "kafka_bootstrap_servers",
    "s3": "aws_endpoint_url",
    "flink": "flink_rest_url",
    "mlflow": "mlflow_tracking_uri",
    "airflow": "airflow_api_url",
}
"""The setting behind each service's address."""


def load() -> Settings:
    """Current settings: environment, then `.env`, then defaults."""
    merged = {**DEFAULTS, **read_env_file(), **{k: v for k, v in os.environ.items() if k in DEFAULTS}}
    return Settings(
        kafka_bootstrap_servers=merged["KAFKA_BOOTSTRAP_SERVERS"],
        kafka_security_protocol=merged["KAFKA_SECURITY_PROTOCOL"].upper(),
        kafka_sasl_mechanism=merged["KAFKA_SASL_MECHANISM"].upper(),
        kafka_sasl_username=merged["KAFKA_SASL_USERNAME"],
        kafka_sasl_password=merged["KAFKA_SASL_PASSWORD"],
        aws_endpoint_url=merged["AWS_ENDPOINT_URL"],
        aws_access_key_id=merged["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=merged["AWS_SECRET_ACCESS_KEY"],
        aws_region=merged["AWS_DEFAULT_REGION"],
        mlflow_tracking_uri=merged["MLFLOW_TRACKING_URI"],
        flink_rest_url=merged["FLINK_REST_URL"].rstrip("/"),
        flink_scoring_rest_url=(merged["FLINK_SCORING_REST_URL"] or merged["FLINK_REST_URL"]).rstrip("/"),
        flink_jobs=merged["SENSOROPS_FLINK_JOBS"].lower(),
        airflow_api_url=merged["AIRFLOW_API_URL"].rstrip("/"),
        airflow_username=merged["AIRFLOW_USERNAME"],
        airflow_password=merged["AIRFLOW_PASSWORD"],
        home=Path(merged["SENSOROPS_HOME"]),
    )


QUIET_MLFLOW = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
"""No progress bar per artifact download, no "View run" line per run: they fill notebook pages and logs."""


def quiet_mlflow() -> None:
    """Set `QUIET_MLFLOW` where the environment does not say otherwise (`registry.client` calls it)."""
    for name, value in QUIET_MLFLOW.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def mlflow_quietly() -> Iterator[None]:
    """Without what MLflow's registry prints to stderr ("Registered model ... already exists", "Created version",
    "Copied version") and what it logs while it waits for a version: the callers report what matters."""
    waiting = logging.getLogger("mlflow.store.model_registry.abstract_store")
    level = waiting.level
    waiting.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        waiting.setLevel(level)


def export_environment(settings: Settings | None = None) -> dict[str, str]:
    """The settings as environment variables, for child processes and clients (boto3, mlflow) that read them."""
    s = settings or load()
    return {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": s.kafka_security_protocol,
        "KAFKA_SASL_MECHANISM": s.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": s.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": s.kafka_sasl_password,
        "AWS_ENDPOINT_URL": s.aws_endpoint_url,
        "MLFLOW_S3_ENDPOINT_URL": s.aws_endpoint_url,
        "AWS_ACCESS_KEY_ID": s.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": s.aws_secret_access_key,
        "AWS_DEFAULT_REGION": s.aws_region,
        "MLFLOW_TRACKING_URI": s.mlflow_tracking_uri,
        "FLINK_REST_URL": s.flink_rest_url,
        "FLINK_SCORING_REST_URL": s.flink_scoring_rest_url,
        "SENSOROPS_FLINK_JOBS": s.flink_jobs,
        "AIRFLOW_API_URL": s.airflow_api_url,
        "SENSOROPS_HOME": str(s.home),
    }


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents readable by the owner only; tighten `path` if it already exists."""
    for missing in reversed([p for p in (path, *path.parents) if not p.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)  # `mkdir(parents=True)` would give the parents the default mode
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)  # a directory made before the platform kept its files private
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read: created with mode 600, never loosened then tightened.

    The text goes to a new file in the same directory, created 600 (`mkstemp`), which then replaces `path`: no
    moment when the secrets sit in a readable file, whatever mode an older `path` had, and no half-written file.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextlib.contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (for clients and child processes that read them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def git_commit() -> str | None:
    """The commit of the checkout the code runs from, with `-dirty` when there are uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10)
        return done.stdout.strip()

    try:
        head, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head
