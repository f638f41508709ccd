"""Prometheus on the live platform: every target scraped, the pipeline's series there while a stream job runs, and
an alert rule firing for real when that job is cancelled. About a minute and a half."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import requests
from kafka import KafkaProducer

from sensorops import flink, generator, kafka_io, registry, stream
from sensorops.platform.health import prometheus_url
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

DEAD_LETTERS = [b"not json", b'{"sensor_id": "s"}', b"\xff\xfe{"]


def query(expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    response = requests.get(f"{prometheus_url()}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def value(expr: str, timeout: float = 60) -> float:
    """The first value of `expr` once Prometheus has one (after a scrape of the new series)."""
    found = wait_until(lambda: query(expr), timeout=timeout, interval=2, message=f"no value for {expr}")
    return float(found[0]["value"][1])


@pytest.fixture(scope="module")
def job(settings):
    """A scratch stream job (checkpoints every 2 s) on a backlog with a few dead letters, running."""
    cfg = stream.StreamJobConfig.scratch(
        "monitor", uuid.uuid4().hex[:8], checkpoint_interval_s=2, archive=False, aggregates=False
    )
    kafka_io.ensure_topic(cfg.source_topic, partitions=2)
    kafka_io.produce(generator.simulate(n_sensors=5, duration_s=30, seed=3), topic=cfg.source_topic)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for bad in DEAD_LETTERS:
        producer.send(cfg.source_topic, bad)
    producer.close()
    job_id, _ = stream.submit(cfg, fresh=True)
    try:
        flink.wait_running(job_id)
        yield cfg
    finally:
        stream.remove(cfg)


def test_every_target_is_up(settings):
    def targets() -> list[dict]:
        response = requests.get(f"{prometheus_url()}/api/v1/targets", params={"state": "active"}, timeout=10)
        return response.json()["data"]["activeTargets"]

    found = wait_until(targets, lambda ts: all(t["health"] == "up" for t in ts), timeout=30, interval=2)
    assert {t["labels"]["job"] for t in found} == {"prometheus", "flink", "kafka", "sensorops"}


def flink_label(name: str) -> str:
    """A job name as Flink's reporter writes it in labels (it replaces `-` and other characters with `_`)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def test_the_pipeline_series_have_values_while_the_job_runs(job):
    name = f'job_name="{flink_label(job.name)}"'
    assert value(f"flink_jobmanager_job_numberOfCompletedCheckpoints{{{name}}} > 0") > 0
    assert value(f"sum(flink_taskmanager_job_task_operator_numRecordsIn{{{name}}}) > 0") > 0
    assert value(f"sum(flink_taskmanager_job_task_numRecordsInPerSecond{{{name}}})") >= 0
    assert value(f"sum(flink_taskmanager_job_task_operator_pendingRecords{{{name}}})") >= 0  # the source's lag
    assert value(f'sum(sensorops_consumer_lag{{group="{job.group_id}", topic="{job.source_topic}"}})') >= 0
    dead = f'kafka_server_topic_messages_in_total{{topic="{job.dead_letter_topic}"}}'
    assert value(f"{dead} >= {len(DEAD_LETTERS)}") >= len(DEAD_LETTERS)
    champion = value('sensorops_model_alias_version{alias="champion"}')
    assert champion == int(registry.current_champion() or 0)


def test_a_cancelled_job_fires_job_not_running(job):
    stream.cancel(job.name)

    def firing() -> list[dict]:
        response = requests.get(f"{prometheus_url()}/api/v1/alerts", timeout=10)
        alerts = response.json()["data"]["alerts"]
        return [a for a in alerts if a["labels"].get("alertname") == "FlinkJobNotRunning" and a["state"] == "firing"]

    alerts = wait_until(
        firing,
        lambda found: any(a["labels"]["job_name"] == flink_label(job.name) for a in found),
        timeout=75,
        interval=2,
        message="FlinkJobNotRunning did not fire",
    )
    mine = next(a for a in alerts if a["labels"]["job_name"] == flink_label(job.name))
    assert re.search(r"is not running", mine["annotations"]["summary"])
