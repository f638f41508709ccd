"""What the exporter reads, one function per source, each returning `Sample`s: consumer lag from Kafka's admin API,
the registry's aliases and their offline metrics, live model quality from the last windows of `sensor-model-metrics`,
and Airflow's DAG runs. Each call is cheap (a handful of requests) and raises when its service does not answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from kafka.admin import OffsetSpec

from sensorops import config, kafka_io, registry
from sensorops.airflow_api import AirflowClient
from sensorops.kafka_io.admin import admin_client
from sensorops.kafka_io.client import bootstrap_servers

log = logging.getLogger(__name__)

HELP = {
    "sensorops_consumer_lag": "Records of a partition not yet committed by a consumer group (end offset - committed).",
    "sensorops_model_alias_version": "The version an alias of the registered model points to (0: no such alias).",
    "sensorops_model_offline_metric": "A metric the aliased version's training run logged on its test period.",
    "sensorops_model_live_metric": "Live quality of a scored version over the newest window the scoring job wrote.",
    "sensorops_model_live_window_end_seconds": "End of that window (Unix time).",
    "sensorops_airflow_dag_runs": "DAG runs of each DAG by state.",
    "sensorops_airflow_dag_last_run": "1 for the state of each DAG's latest run.",
}
"""Every metric the exporter serves, with its help text."""

ALIASES = (registry.CHAMPION, registry.CHALLENGER)
OFFLINE_METRICS = ("f1", "precision", "recall", "false_alarm_rate")
LIVE_METRICS = ("f1", "precision", "recall", "false_alarm_rate", "events")
LIVE_SHARES = {"flagged_rate": ("tp", "fp"), "anomaly_rate": ("tp", "fn")}
"""Shares of a live window's readings: those the model flagged, and those truly anomalous (the labels)."""
RUN_STATES = ("queued", "running", "success", "failed")
LIVE_WINDOWS_READ = 64
"""Rows read from the end of the model-metrics topic: several windows of each role at its one-minute slide."""


@dataclass(frozen=True)
class Sample:
    """One value of one series."""

    name: str
    labels: dict[str, str] = field(hash=False)
    value: float


def consumer_lag(servers: str | None = None) -> list[Sample]:
    """Lag per group and partition, for every group with committed offsets on a topic that still exists."""
    admin = admin_client(bootstrap_servers(servers))
    try:
        groups = [g["group_id"] for g in admin.list_groups()]
        committed = admin.list_group_offsets(groups) if groups else {}
        topics = set(admin.list_topics())
        wanted = {tp for offsets in committed.values() for tp in offsets if tp.topic in topics}
        ends = admin.list_partition_offsets(dict.fromkeys(wanted, OffsetSpec.LATEST)) if wanted else {}
    finally:
        admin.close()
    return [
        Sample(
            "sensorops_consumer_lag",
            {"group": group, "topic": tp.topic, "partition": str(tp.partition)},
            max(ends[tp].offset - meta.offset, 0),
        )
        for group, offsets in committed.items()
        for tp, meta in offsets.items()
        if tp in ends and meta.offset >= 0
    ]


def model_registry(model_name: str = registry.MODEL_NAME) -> list[Sample]:
    """Where each alias points (0 when it does not exist) and the offline metrics of each aliased version."""
    samples = []
    for alias in ALIASES:
        version = registry.alias_version(model_name, alias)
        samples.append(
            Sample("sensorops_model_alias_version", {"model": model_name, "alias": alias}, int(version or 0))
        )
        if version is None:
            continue
        client = registry.client()
        metrics = client.get_run(client.get_model_version(model_name, version).run_id).data.metrics
        samples += [
            Sample("sensorops_model_offline_metric", {"model": model_name, "version": version, "metric": m}, metrics[m])
            for m in OFFLINE_METRICS
            if m in metrics
        ]
    return samples


def live_quality(topic: str = config.MODEL_METRICS_TOPIC, servers: str | None = None) -> list[Sample]:
    """Each role's newest window in `topic` (the scoring job's live metrics): F1 and the others, per version."""
    try:
        rows = kafka_io.read(topic, last=LIVE_WINDOWS_READ, committed_only=True, timeout_s=5, servers=servers)
    except kafka_io.MissingTopic:
        return []  # no scoring job has run yet
    newest: dict[str, str] = {}
    for row in rows:
        newest[row["role"]] = max(newest.get(row["role"], ""), row["window_end"])
    samples = []
    for row in rows:
        if row["window_end"] != newest[row["role"]]:
            continue
        labels = {"role": row["role"], "model": row["model_name"], "version": str(row["model_version"])}
        end = _timestamp(row["window_end"])
        samples.append(Sample("sensorops_model_live_window_end_seconds", labels, end))
        samples += [
            Sample("sensorops_model_live_metric", {**labels, "metric": m}, float(row[m]))
            for m in LIVE_METRICS
            if row.get(m) is not None
        ]
        if row.get("events"):
            samples += [
                Sample(
                    "sensorops_model_live_metric",
                    {**labels, "metric": name},
                    sum(row[c] for c in counts) / row["events"],
                )
                for name, counts in LIVE_SHARES.items()
            ]
    return samples


def _timestamp(text: str) -> float:
    """Flink's JSON timestamps (`2026-11-27 00:01:00Z`, with or without milliseconds) as Unix time."""
    return datetime.fromisoformat(text).timestamp()


def airflow_runs(client: AirflowClient | None = None) -> list[Sample]:
    """How many runs of each DAG are in each state, and the state of its latest run."""
    client = client or AirflowClient()
    samples = []
    for dag in client.get("/dags", limit=100)["dags"]:
        dag_id = dag["dag_id"]
        runs = f"/dags/{dag_id}/dagRuns"
        for state in RUN_STATES:
            total = client.get(runs, state=state, limit=1)["total_entries"]
            samples.append(Sample("sensorops_airflow_dag_runs", {"dag_id": dag_id, "state": state}, total))
        latest = client.get(runs, order_by="-run_after", limit=1)["dag_runs"]
        if latest:
            samples.append(Sample("sensorops_airflow_dag_last_run", {"dag_id": dag_id, "state": latest[0]["state"]}, 1))
    return samples
