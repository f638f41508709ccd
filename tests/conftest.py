"""Fixtures shared by the suites that run the DAG on the live platform (tests/integration, tests/drills).

Nothing here touches a service unless a test asks for the fixture, so tests/unit stays offline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from sensorops import pipeline

if TYPE_CHECKING:
    from sensorops.airflow_api import AirflowClient


@dataclass(frozen=True)
class PipelineRun:
    """One run of `sensor_mlops_pipeline`, followed to its end: its task instances and, if it succeeded, every
    step's XCom."""

    run_id: str
    conf: dict[str, Any]
    run: dict[str, Any]
    outputs: dict[str, Any]
    started: float
    """Epoch seconds just before the run was triggered."""

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return {t["task_id"]: t for t in self.run["tasks"]}


@pytest.fixture(scope="session")
def airflow() -> AirflowClient:
    """A logged-in client of Airflow's REST API, once the DAG is parsed; fails (never skips) if the platform is down."""
    from sensorops.airflow_api import AirflowClient
    from sensorops.platform import require

    require()  # raises ServiceUnavailable naming what is down and "run `make up`"
    client = AirflowClient()
    client.wait_for_dag(pipeline.DAG_ID)
    return client


@pytest.fixture(scope="session")
def run_pipeline(airflow: AirflowClient) -> Callable[..., PipelineRun]:
    """Trigger `sensor_mlops_pipeline` with a `conf` and follow the run to its end."""

    def run(conf: dict[str, Any], timeout_s: float = 1500.0) -> PipelineRun:
        started = time.time()
        run_id = airflow.trigger(pipeline.DAG_ID, conf=conf)
        finished = airflow.wait_for_run(pipeline.DAG_ID, run_id, timeout_s=timeout_s)
        outputs = {}
        if finished["state"] == "success":
            outputs = {name: airflow.xcom(pipeline.DAG_ID, run_id, name) for name in pipeline.STEPS}
        return PipelineRun(run_id, conf, finished, outputs, started)

    return run
