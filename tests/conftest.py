"""Fixtures shared by the suites that run the DAG on the live platform (tests/integration, tests/drills), and headless
Chromium for the pages they render (the book in tests/notebooks, the dashboard in tests/integration).

Nothing here touches a service unless a test asks for the fixture, so tests/unit stays offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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


def chromium_binary() -> str:
    """Debian's `chromium`; fail (not skip) with the install command if it is missing."""
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.fail("Chromium is not installed; the test needs it: apt-get install -y chromium", pytrace=False)


def _chromium(url: str, output: str, budget_ms: int, timeout_s: float, window: str) -> subprocess.CompletedProcess:
    """Headless Chromium on a page, its scripts run for `budget_ms` of virtual time, then `output` (a flag) taken."""
    with tempfile.TemporaryDirectory(prefix="sensorops-chromium-") as profile:
        command = [
            chromium_binary(),
            "--headless",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={window}",
            output,
            url,
        ]
        if os.geteuid() == 0:
            command.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"chromium exited {result.returncode} on {url}:\n{result.stderr[-2000:]}"
    return result


def chromium_dom(url: str, budget_ms: int = 5000, timeout_s: float = 120, window: str = "1280,2000") -> tuple[str, str]:
    """The DOM of a page after its scripts ran (virtual time), and Chromium's log (console messages included)."""
    result = _chromium(url, "--dump-dom", budget_ms, timeout_s, window)
    return result.stdout, result.stderr


def chromium_screenshot(
    url: str, path: Path, budget_ms: int = 5000, timeout_s: float = 120, window: str = "1280,2000"
) -> str:
    """A PNG of a page after its scripts ran, written to `path`; Chromium's log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return _chromium(url, f"--screenshot={path}", budget_ms, timeout_s, window).stderr


@pytest.fixture(scope="session")
def chromium() -> Callable[..., tuple[str, str]]:
    """`chromium(url)`: the rendered DOM of a page and Chromium's log."""
    chromium_binary()
    return chromium_dom


@pytest.fixture(scope="session")
def screenshot() -> Callable[..., str]:
    """`screenshot(url, path)`: a PNG of the rendered page at `path`, and Chromium's log."""
    chromium_binary()
    return chromium_screenshot
