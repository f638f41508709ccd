"""Prometheus on the live platform: every target scraped, the pipeline's series there while a stream job runs, and
an alert rule firing for real when that job is cancelled. About a minute and a half."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from prometheus_client import delete_from_gateway

from sensorops import events, registry, stream
from sensorops.monitoring import dashboard, drift, drift_report, promql
from sensorops.platform.health import prometheus_url
from sensorops.platform.layout import PORTS
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration


def value(expr: str, timeout: float = 60, until: Callable[[float], bool] = lambda v: True) -> float:
    """The first value of `expr` once Prometheus has one (after a scrape of the new series) that satisfies `until`."""
    return wait_until(
        lambda: promql.value(expr),
        lambda v: v is not None and until(v),
        timeout=timeout,
        interval=2,
        message=lambda v: f"{expr} is {v}",
    )


def test_every_target_is_up(settings):
    def targets() -> list[dict]:
        response = requests.get(f"{prometheus_url()}/api/v1/targets", params={"state": "active"}, timeout=10)
        return response.json()["data"]["activeTargets"]

    found = wait_until(targets, lambda ts: all(t["health"] == "up" for t in ts), timeout=30, interval=2)
    assert {t["labels"]["job"] for t in found} == {"prometheus", "flink", "kafka", "sensorops"}


def flink_label(name: str) -> str:
    """A job name as Flink's reporter writes it in labels (it replaces `-` and other characters with `_`)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def test_the_pipeline_series_have_values_while_the_job_runs(stream_job, dead_letters):
    name = f'job_name="{flink_label(stream_job.name)}"'
    assert value(f"flink_jobmanager_job_numberOfCompletedCheckpoints{{{name}}} > 0") > 0
    assert value(f"sum(flink_taskmanager_job_task_operator_numRecordsIn{{{name}}}) > 0") > 0
    assert value(f"sum(flink_taskmanager_job_task_numRecordsInPerSecond{{{name}}})") >= 0
    assert value(f"sum(flink_taskmanager_job_task_operator_pendingRecords{{{name}}})") >= 0  # the source's lag
    group = f'group="{stream_job.group_id}", topic="{stream_job.source_topic}"'
    assert value(f"sum(sensorops_consumer_lag{{{group}}})") >= 0
    dead = f'kafka_server_topic_messages_in_total{{topic="{stream_job.dead_letter_topic}"}}'
    assert value(f"{dead} >= {len(dead_letters)}") >= len(dead_letters)
    champion = value('sensorops_model_alias_version{alias="champion"}')
    assert champion == int(registry.current_champion() or 0)


def test_the_stream_job_counts_its_dead_letters_per_reason(stream_job, dead_letters):
    """The parse UDF's counters (Flink metric groups from Python) reach Prometheus, one series per reason."""
    expected = Counter(events.dead_letter_reason(v) for v in dead_letters)
    name = f'job_name="{flink_label(stream_job.name)}"'

    def counted() -> dict[str, float]:
        found = promql.instant(f"sum by (reason) ({dashboard.DEAD_LETTERS_BY_REASON}{{{name}}}) > 0")
        return {s["metric"]["reason"]: float(s["value"][1]) for s in found}

    assert wait_until(counted, lambda c: c == expected, timeout=60, interval=2) == expected


def firing(alertname: str) -> list[dict[str, Any]]:
    """The alerts called `alertname` that fire now."""
    return promql.alerts(alertname, "firing")


def test_a_cancelled_job_fires_job_not_running(stream_job):
    stream.cancel(stream_job.name)
    alerts = wait_until(
        lambda: firing("FlinkJobNotRunning"),
        lambda found: any(a["labels"]["job_name"] == flink_label(stream_job.name) for a in found),
        timeout=75,
        interval=2,
        message="FlinkJobNotRunning did not fire",
    )
    mine = next(a for a in alerts if a["labels"]["job_name"] == flink_label(stream_job.name))
    assert re.search(r"is not running", mine["annotations"]["summary"])


def test_a_drift_check_reaches_prometheus_and_raises_its_alert() -> None:
    """What `sensorops drift check` pushes (a window shifted by 3 standard deviations) becomes series and the
    `DriftDetected` alert; the group is deleted afterwards, so the platform's own alert state is left as it was."""
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"temperature": rng.normal(21, 1, 2_000), "temperature_vs_fleet": rng.normal(0, 1, 2_000)})
    window = pd.DataFrame({"temperature": rng.normal(21, 1, 500), "temperature_vs_fleet": rng.normal(3, 1, 500)})
    report = drift.compare(reference, window, decision_columns=["temperature_vs_fleet"])
    assert report.drift_detected
    gateway = f"127.0.0.1:{PORTS['pushgateway']}"
    try:
        drift_report.push(report, gateway)
        psi = 'sensorops_drift_psi{column="temperature_vs_fleet"}'  # an earlier push may show until the next scrape
        assert (
            value(psi, until=lambda v: abs(v - report.scores.loc["temperature_vs_fleet", "psi"]) < 1e-9)
            > drift.PSI_DRIFT
        )
        assert value("sensorops_drift_detected", until=lambda v: v == 1) == 1
        wait_until(lambda: firing("DriftDetected"), timeout=60, interval=2, message="DriftDetected did not fire")
    finally:
        delete_from_gateway(gateway, job=drift_report.PUSH_JOB)
