"""Who is running: a run's parameters and context, where its tasks execute, and the services it points at."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sensorops import __version__, config
from sensorops.errors import UserError

DAG_ID = "sensor_mlops_pipeline"
SCHEDULE_VARIABLE = "sensor_mlops_pipeline"
"""The Airflow Variable that turns the nightly schedule on (`on`); off by default, so that no run moves the champion
under a learner's notebooks at 02:00 UTC. Runs started by hand, or by the drift watch, always go on."""
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

SOURCES = ("generate", "recent")
"""Where a run's batch comes from (`RunParams.source`): events it generates and produces, or the records the sensor
topic received in the `recent_minutes` before the run (retraining on the data that moved; `pipeline.recent`)."""

FAULTS = ("during:generate_batch", "after:generate_batch", "after:register")
"""Where a drill can kill a step (`RunParams.fault`): halfway through producing the batch, once every event is
acknowledged (before the manifest is written), and right after the model version is registered."""

ENDPOINT_VARIABLES = {service: setting.upper() for service, setting in config.ENDPOINT_FIELDS.items()}
"""The environment variable behind each service's address (`config.load` reads a setting from its upper-case
name); a run's `endpoints` parameter overrides them for that run only."""


def scheduled_run_goes_on(run_type: object, variable: str | None) -> bool:
    """Whether a DAG run goes on past its switch (`operators.schedule_switch`): a scheduled run only while its
    Airflow Variable (`variable`, its value or None) is `on`; a run started by hand or by another DAG always.

    `run_type` as the task context gives it (Airflow's `DagRunType`), its value, or its `str()`, which is
    `DagRunType.SCHEDULED`: comparing that with "scheduled" once let every scheduled run through."""
    kind = str(getattr(run_type, "value", run_type)).rsplit(".", 1)[-1].lower()
    return kind != "scheduled" or (variable or "").strip().lower() == "on"


def _refuse_unknown_services(names: Iterable[str]) -> None:
    unknown = set(names) - set(config.ENDPOINT_FIELDS)
    if unknown:
        known = ", ".join(config.ENDPOINT_FIELDS)
        raise UserError(f"unknown service in endpoints: {', '.join(sorted(unknown))}; choose from {known}")


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
    source: str = "generate"
    """`generate` or `recent` (`SOURCES`); with `recent` nothing is produced and the batch parameters go unused."""
    recent_minutes: float = 60.0
    """With `source=recent`: how far back from the run's logical time the batch reaches."""
    models: str = "all"
    """Comma-separated models of `training.MODELS`, or `all`."""
    min_anomaly_rate: float = 0.01
    max_anomaly_rate: float = 0.30
    max_dead_letter_ratio: float = 0.05
    archive_timeout_s: float = 300.0
    endpoints: dict[str, str] = field(default_factory=dict)
    """Service name -> address, overriding the settings for this run (e.g. `{"kafka": "127.0.0.1:1"}`)."""
    fault: str = ""
    """Drill hook, off when empty: one of `FAULTS` kills the step's process once per run at that point (`faults`)."""

    def __post_init__(self) -> None:
        _refuse_unknown_services(self.endpoints)
        if self.source not in SOURCES or not 0 < self.recent_minutes <= 7 * 24 * 60:
            raise UserError(f"source must be one of {', '.join(SOURCES)} and recent_minutes in (0, 10080]")
        if self.fault and self.fault not in FAULTS:
            raise UserError(f"unknown fault {self.fault!r}; choose one of {', '.join(FAULTS)} (or leave it empty)")
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
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(microsecond=0)

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
    """The environment variables that point services at the given addresses (`run_step` sets them for a step)."""
    _refuse_unknown_services(endpoints)
    env = {ENDPOINT_VARIABLES[service]: str(address) for service, address in endpoints.items()}
    if "s3" in endpoints:
        env["MLFLOW_S3_ENDPOINT_URL"] = str(endpoints["s3"])
    return env
