"""One drift check, as `sensorops drift check` and the `sensor_drift_watch` DAG run it: a recent window of the
feature archive against the champion's training data (or an earlier range), the decision logged to MLflow and
pushed to the Pushgateway for Prometheus' `DriftDetected` alert."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from sensorops import config, platform, registry
from sensorops.errors import UserError
from sensorops.monitoring import drift, drift_data, drift_report
from sensorops.monitoring.drift_data import Sample
from sensorops.platform.layout import PORTS

DECIDE_ON = {"stable": drift.STABLE_COLUMNS, "all": drift.DRIFT_COLUMNS}
"""Columns whose drift sets `drift_detected`: the stationary ones (default), or every column."""


WATCH_VARIABLE = "sensor_drift_watch"
"""The Airflow Variable that turns the watch's schedule on (`on`); off by default, so that nothing retrains by itself
on a learner's machine. Runs started by hand always check."""


def default_pushgateway() -> str:
    """`PUSHGATEWAY_URL`, or the local platform's Pushgateway."""
    return os.environ.get("PUSHGATEWAY_URL", f"127.0.0.1:{PORTS['pushgateway']}")


@dataclass(frozen=True)
class DriftCheck:
    """What to compare and where the result goes; refused with a one-line `UserError` before any service is asked."""

    minutes: float = 60.0
    """Length of the recent window, ending at `end` (default now)."""
    end: str | None = None
    location: str = f"s3://{config.ARCHIVE_BUCKET}/features"
    model_name: str = registry.MODEL_NAME
    """Registered model whose champion's training range is the reference, unless `reference_start/end` are set."""
    reference_start: str | None = None
    reference_end: str | None = None
    max_reference_rows: int = drift_data.MAX_REFERENCE_ROWS
    threshold: float = drift.PSI_DRIFT
    decide_on: str = "stable"
    experiment: str = drift_report.EXPERIMENT
    mlflow: bool = True
    pushgateway: str = field(default_factory=default_pushgateway)
    """`host:port`; empty: do not push."""

    def __post_init__(self) -> None:
        if not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise UserError(f"--minutes must be positive, got {self.minutes}")
        if (self.reference_start is None) != (self.reference_end is None):
            raise UserError(
                "give both --reference-start and --reference-end, or neither (the champion's training data)"
            )
        if not (self.threshold > 0 and math.isfinite(self.threshold)):
            raise UserError(f"--threshold must be a positive PSI, got {self.threshold}")
        if self.max_reference_rows < 1:
            raise UserError("--max-reference-rows must be at least 1")
        if self.decide_on not in DECIDE_ON:
            raise UserError(f"decide on one of {', '.join(DECIDE_ON)}, not {self.decide_on!r}")
        for value in (self.end, self.reference_start, self.reference_end):
            if value is not None:
                drift_data.to_utc(value)  # a bad timestamp fails here


@dataclass(frozen=True)
class DriftOutcome:
    report: drift.DriftReport
    window: Sample
    reference: Sample
    params: dict[str, Any]
    """What was compared with what, as logged to MLflow (window, reference, champion version)."""
    mlflow_run_id: str | None
    push_error: str | None
    """Why the scores did not reach the Pushgateway (the check itself is done and logged), or None."""

    def summary(self) -> dict[str, Any]:
        return {**self.report.summary(), **self.params, "mlflow_run_id": self.mlflow_run_id}


def run(check: DriftCheck) -> DriftOutcome:
    """Read both samples, compare them, log and push the result."""
    if check.mlflow or check.reference_start is None:
        platform.require("mlflow", timeout=10)
    platform.require("s3", timeout=10)
    window = drift_data.recent_window(check.location, check.minutes, check.end)
    params: dict[str, Any] = {"window": f"{window.start} .. {window.end}", "window_source": window.source}
    if check.reference_start is None:
        champion = drift_data.champion_training_range(check.model_name)
        location, start, end = champion.location, champion.train_from, champion.train_to
        params.update(champion_version=champion.version, champion_run_id=champion.run_id)
    else:
        location, start, end = check.location, check.reference_start, check.reference_end
    reference = drift_data.read_range(location, start, end, max_rows=check.max_reference_rows)
    params.update(reference=f"{reference.start} .. {reference.end}", reference_source=reference.source)
    report = drift.compare(
        reference.frame, window.frame, decision_columns=DECIDE_ON[check.decide_on], threshold=check.threshold
    )
    run_id = None
    if check.mlflow:
        registry.client()  # the configured tracking URI
        run_id = drift_report.log_to_mlflow(report, experiment=check.experiment, params=params)
    push_error = None
    if check.pushgateway:
        try:
            drift_report.push(report, check.pushgateway)
        except OSError as exc:
            push_error = f"the scores did not reach the Pushgateway at {check.pushgateway} ({exc})"
    return DriftOutcome(report, window, reference, params, run_id, push_error)
