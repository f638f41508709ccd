"""Benchmark of the stream job against the engine's own limit, and its produce-to-feature latency
(`sensorops bench stream`).

Throughput: a backlog of events is produced once; two jobs drain it in turn, each with a bounded source (it reads
what the topic holds when it starts, then finishes), at the same parallelism, by default twice in the order project,
reference, reference, project, and each keeps its faster run: whichever runs first would otherwise pay for warming up
the TaskManager's compiled code (a first drain after a restart ran at 60 % of the next), and a load that drifts during
the run weighs on both alike:
- the project's job (`stream.run_job`), every sink and the archive on;
- the reference: the same feature SQL (`features.flink_sql`) over a source in Flink's native `json` format, with no
  Python and no dead-letter branch, into a `blackhole` sink (`run_reference`): what Flink itself does with the work.
Each rate is an exact count over exact instants: from the moment every task of the job runs (Flink's subtask
times) to the last feature row, which is the last record's timestamp on the features topic for the project's job
(a non-transactional sink: records carry the time they were sent) and the moment the blackhole's tasks finished for
the reference (which takes no checkpoints, so nothing delays its end). Flink's REST metrics refresh every 10 s and
would be off by up to 20 % on runs this short.

Latency: events are offered at a steady rate with `timestamp` = the moment they are sent; a consumer of the
features topic measures arrival - timestamp.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from sensorops import events, features, flink, generator, kafka_io, stream
from sensorops.errors import UserError
from sensorops.stream import job as stream_job
from sensorops.stream import tables
from sensorops.waiting import wait_until

REFERENCE_JOB_FILE = Path(__file__).parents[1] / "jobs" / "stream_reference.py"
REFERENCE = "the same feature SQL, native json source, blackhole sink"


@dataclass
class LatencyReport:
    guarantee: str
    offered_per_s: float
    sent: int
    received: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    samples: list[float] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class Drain:
    """One job draining the backlog: feature rows it wrote, seconds from all its tasks running to its last row."""

    job: str
    rows: int
    seconds: float
    events_per_s: float
    job_s: float
    """The job's whole life by the REST API (start, the Python workers, the final checkpoint included)."""


@dataclass(frozen=True)
class Throughput:
    events: int
    parallelism: int
    settings: dict[str, str]
    """Flink configuration given to the project's job on top of its own (`StreamJobConfig.extra`)."""
    project: Drain
    reference: Drain
    """Each the faster of its runs."""
    rounds: int = 1
    runs: dict[str, list[float]] = field(default_factory=dict)
    """Events/s of every run, per job ("project", "reference"), in the order they ran."""

    @property
    def ratio(self) -> float:
        return self.project.events_per_s / self.reference.events_per_s


def throughput(
    n_events: int = 1_000_000,
    n_sensors: int = 100,
    parallelism: int = 1,
    settings: dict[str, str] | None = None,
    rounds: int = 2,
    timeout_s: float = 1800.0,
) -> Throughput:
    """The project's job and the reference draining the same backlog of `n_events` in turn, `rounds` times each
    (module docstring)."""
    if rounds < 1:
        raise UserError(f"rounds must be at least 1, got {rounds}")
    tag = uuid.uuid4().hex[:8]
    settings = dict(settings or {})
    cfg = stream.StreamJobConfig.scratch("bench", tag, parallelism=parallelism, bounded=True, extra=settings)
    backlog = generator.simulate(n_sensors=n_sensors, duration_s=n_events * 0.5 / n_sensors, seed=7)
    # Each run is a job of its own: the project's with its own features topic (its rows are counted there).
    projects = [
        dataclasses.replace(cfg, name=f"{cfg.name}-{i}", group_id=f"{cfg.name}-{i}", features_topic=f"{cfg.name}-f{i}")
        for i in range(rounds)
    ]
    references = [
        dataclasses.replace(
            stream.StreamJobConfig.scratch("benchref", f"{tag}-{i}", parallelism=parallelism, bounded=True),
            source_topic=cfg.source_topic,
        )
        for i in range(rounds)
    ]
    drains: dict[str, list[Drain]] = {"project": [], "reference": []}
    try:
        stream.prepare(cfg)
        kafka_io.produce(backlog, topic=cfg.source_topic, workers=2)
        drain = {"project": _drain_project, "reference": _drain_reference}
        for i, pair in enumerate(zip(projects, references)):
            turns = list(zip(("project", "reference"), pair))
            for side, job in turns if i % 2 == 0 else reversed(turns):
                drains[side].append(drain[side](job, len(backlog), timeout_s))
        fastest = {side: max(runs, key=lambda d: d.events_per_s) for side, runs in drains.items()}
        rates = {side: [d.events_per_s for d in runs] for side, runs in drains.items()}
        return Throughput(len(backlog), parallelism, settings, fastest["project"], fastest["reference"], rounds, rates)
    finally:
        for job in (*projects, *references):
            flink.cancel(job.name)
            flink.forget(job.name)
        for project in projects:
            kafka_io.delete_topic(project.features_topic, servers=cfg.bootstrap_servers)
        stream.remove(cfg)


def _running_since(job_id: str) -> float:
    """When the last of the job's tasks started running (their operators, the Python workers too, were open)."""
    return max(t["RUNNING"] for t in flink.task_times(job_id))


def _drain(name: str, job_id: str, rows: int, expected: int, last: float, job_s: float) -> Drain:
    if rows != expected:
        raise UserError(f"{name} wrote {rows:,} feature rows for {expected:,} events; see the Flink UI")
    seconds = last - _running_since(job_id)
    return Drain(name, rows, seconds, rows / seconds, job_s)


def _drain_project(cfg: stream.StreamJobConfig, expected: int, timeout_s: float) -> Drain:
    stream.prepare(cfg)  # its own features topic, where its rows are counted
    job_id, _ = stream.submit(cfg, fresh=True)
    final = flink.wait_finished(job_id, timeout_s)
    ends = kafka_io.end_offsets(cfg.features_topic, cfg.bootstrap_servers)
    lasts = {p: end - 1 for p, end in ends.items() if end > 0}
    found = kafka_io.records(cfg.features_topic, start=lasts, max_records=len(lasts), servers=cfg.bootstrap_servers)
    last = max((r.timestamp for r in found), default=0) / 1000
    return _drain(cfg.name, job_id, sum(ends.values()), expected, last, final.duration_s)


def _drain_reference(cfg: stream.StreamJobConfig, expected: int, timeout_s: float) -> Drain:
    job_id, _ = flink.submit(REFERENCE_JOB_FILE, cfg.name, ["--config-json", cfg.to_json()], fresh=True)
    final = flink.wait_finished(job_id, timeout_s)
    sinks = {name: n for name, n in flink.vertex_records(job_id).items() if "reference_sink" in name}
    last = max(t["FINISHED"] for t in flink.task_times(job_id))
    return _drain(cfg.name, job_id, sum(sinks.values()), expected, last, final.duration_s)


def reference_statements(cfg: stream.StreamJobConfig) -> list[str]:
    """The reference job's SQL: the project's feature SQL over Flink's own JSON decoding, into a blackhole."""
    source = tables.kafka_source(cfg, cfg.source_topic, **tables.JSON_VALUES)
    if cfg.bounded:
        source["scan.bounded.mode"] = "latest-offset"
    ts = "`timestamp`"
    return [
        f"""CREATE TEMPORARY TABLE json_source (
  sensor_id STRING, {ts} TIMESTAMP_LTZ(3), temperature DOUBLE, humidity DOUBLE, pressure DOUBLE,
  is_anomaly BOOLEAN, anomaly_type STRING, location ROW<building STRING, `floor` INT, room STRING>,
  device_info ROW<model STRING, firmware_version STRING, battery_level DOUBLE>, proc_time AS PROCTIME()
) {tables.with_options(source)}""",
        f"""CREATE TEMPORARY VIEW events AS
SELECT sensor_id, {ts} AS event_time, temperature, humidity, pressure, COALESCE(is_anomaly, FALSE) AS is_anomaly,
  COALESCE(anomaly_type, 'none') AS anomaly_type, location.building AS building, location.`floor` AS `floor`,
  location.room AS room, device_info.model AS device_model, device_info.firmware_version AS firmware_version,
  device_info.battery_level AS battery_level,
  CAST(EXTRACT(EPOCH FROM {ts}) * 1000 + EXTRACT(MILLISECOND FROM {ts}) AS BIGINT) AS event_ms, proc_time
FROM json_source WHERE sensor_id IS NOT NULL AND {ts} IS NOT NULL""",
        f"CREATE TEMPORARY TABLE reference_sink (\n  {stream_job.feature_schema()}\n) WITH ('connector' = 'blackhole')",
        f"INSERT INTO reference_sink {features.flink_sql('events')}",
    ]


def run_reference(cfg: stream.StreamJobConfig) -> None:
    """Build the reference job and hand it to the cluster (runs inside `flink run -py`). No checkpoints: it has no
    state to keep, and a bounded job that checkpoints waits for one more before it may finish."""
    settings = stream.job_configuration(cfg).items()
    env = tables.table_environment(
        {k: v for k, v in settings if not k.startswith(("execution.checkpointing.", "python."))}
    )
    *ddl, insert = reference_statements(cfg)
    for statement in ddl:
        env.execute_sql(kafka_io.with_password(statement))
    env.execute_sql(insert)


def latency(
    rate: float = 1000.0,
    duration_s: float = 30.0,
    guarantee: str = "at-least-once",
    checkpoint_interval_s: float = 10.0,
    n_sensors: int = 100,
) -> LatencyReport:
    """Produce-to-feature latency percentiles at a steady offered `rate` with the features sink's `guarantee`."""
    cfg = stream.StreamJobConfig.scratch(
        "bench", uuid.uuid4().hex[:8], features_guarantee=guarantee, checkpoint_interval_s=checkpoint_interval_s
    )
    fleet = events.to_dicts(generator.simulate(n_sensors=n_sensors, duration_s=0.5, seed=11))
    samples: list[float] = []
    stop = threading.Event()
    try:
        job_id, _ = stream.submit(cfg)
        flink.wait_running(job_id, timeout=120)

        def receive() -> None:
            with kafka_io.consumer(
                cfg.features_topic, start="end", committed_only=guarantee == "exactly-once", fetch_max_wait_ms=10
            ) as (consumer, _):
                ready.set()
                while not stop.is_set():
                    for records in consumer.poll(timeout_ms=100).values():
                        arrived = time.time()
                        for r in records:
                            ts = orjson.loads(r.value)["event_time"]
                            sent = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                            samples.append((arrived - sent) * 1000)

        ready = threading.Event()
        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        ready.wait(30)  # positioned at the end before anything is sent
        producer = kafka_io.EventProducer(cfg.source_topic, linger_ms=0)
        sent = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < duration_s:
            due = int(elapsed * rate)
            while sent < due:
                event = dict(fleet[sent % len(fleet)])
                now = datetime.now(UTC).isoformat(timespec="milliseconds")
                event["timestamp"] = now.replace("+00:00", "Z")
                producer.send_batch([event["sensor_id"].encode()], [orjson.dumps(event)])
                sent += 1
            time.sleep(0.005)
        producer.close()
        try:
            wait_until(lambda: len(samples), lambda n: n >= sent, timeout=checkpoint_interval_s * 2 + 10)
        except UserError:
            pass  # report what arrived: `received` < `sent` says the rest did not in time
        stop.set()
        receiver.join(5)
        p = np.percentile(samples, [50, 95, 99]) if samples else [float("nan")] * 3
        return LatencyReport(guarantee, rate, sent, len(samples), *map(float, p), samples=samples)
    finally:
        stop.set()
        stream.remove(cfg)
