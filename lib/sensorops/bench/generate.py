"""Generator -> Kafka with acks=all: events per second, and where the time goes.

Generation and serialisation are timed alone, then the client alone on pre-serialised batches (one process), then
Kafka's own Java producer benchmark (`ProducerPerformance`) on the same payloads with the same producer settings, the
limit the client is measured against, then end to end with 1, 2, ... producer processes. Every run writes to a fresh
topic, deleted afterwards.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import kafka
import pandas as pd

from sensorops import config, events, generator, kafka_io
from sensorops.errors import UserError
from sensorops.platform import install
from sensorops.platform.layout import Layout

REFERENCE = "Kafka's ProducerPerformance"
JAVA_SETTINGS = (
    "acks", "enable_idempotence", "compression_type", "linger_ms", "batch_size", "max_request_size",
    "delivery_timeout_ms", "request_timeout_ms", "retry_backoff_ms",
)  # fmt: skip
"""The project's producer settings (`kafka_io.producer_settings`) that the Java producer takes under the same name
with dots."""
SENT = re.compile(r"^(\d+) records sent, ([\d.]+) records/sec", re.M)


@dataclass(frozen=True)
class Step:
    """One measured step: what ran, how long, how many events it handled (and Kafka acknowledged)."""

    label: str
    seconds: float
    events: int
    acknowledged: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class GenerateBench:
    events: int
    sensors: int
    batch: int
    setup: str
    """Client, compression and machine, in one line."""
    steps: list[Step]


def setup_line(sensors: int, batch: int, n: int) -> str:
    from kafka.record.util import crc32c_c

    crc = "C" if crc32c_c else "pure Python (pip install crc32c)"
    return (
        f"{n:,} events, {sensors} sensors, batches of {batch:,}; kafka-python {kafka.__version__}, "
        f"compression {kafka_io.best_compression()}, crc32c {crc}; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def run(
    n_events: int,
    n_sensors: int,
    workers: list[int],
    servers: str | None = None,
    progress: Callable[[Step], None] | None = None,
    on_setup: Callable[[str], None] | None = None,
) -> GenerateBench:
    """Measure each step; `on_setup` is called with the setup line before the first step, `progress` with each step
    as soon as it is measured."""
    if n_events < n_sensors or n_sensors < 1 or not workers or min(workers) < 1:
        raise UserError("need --sensors >= 1, --events >= --sensors and worker counts >= 1")
    cfg = generator.GeneratorConfig(n_sensors=n_sensors, interval_s=1.0)
    ticks = n_events // n_sensors
    n = ticks * n_sensors
    chunk = max(1, 20_000 // n_sensors)

    frames = functools.partial(simulated, cfg, ticks, chunk)

    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        if progress:
            progress(step)

    result = GenerateBench(n, n_sensors, chunk * n_sensors, setup_line(n_sensors, chunk * n_sensors, n), steps)
    if on_setup:
        on_setup(result.setup)
    t0 = time.perf_counter()
    batches = list(frames())
    done(Step("generation only", time.perf_counter() - t0, n))
    t0 = time.perf_counter()
    serialised = [events.serialize(b) for b in batches]
    done(Step("serialisation only", time.perf_counter() - t0, n))
    del batches
    topics: list[str] = []
    try:
        topics.append(f"bench-{uuid.uuid4().hex[:8]}")
        r = kafka_io.produce(serialised, topics[-1], servers, raise_on_failure=False)
        done(Step("client only (1 process)", r.seconds, r.acknowledged, r.acknowledged))
        topics.append(f"bench-{uuid.uuid4().hex[:8]}")
        done(producer_performance([v for _, values in serialised for v in values], topics[-1], servers))
        del serialised
        for w in workers:
            topics.append(f"bench-{uuid.uuid4().hex[:8]}")
            r = kafka_io.produce(None, topics[-1], servers, source=frames, workers=w, raise_on_failure=False)
            label = f"end to end, {w} process{'es' if w > 1 else ''}"
            timings = dict(r.timings)
            if w > 1:  # like the reference's rate, which leaves out the JVM's start: from when every worker is ready
                timings["with process start"] = r.seconds
            done(Step(label, r.timings.get("wait for workers", r.seconds), r.acknowledged, r.acknowledged, timings))
    finally:
        for topic in topics:
            kafka_io.delete_topic(topic, servers)
    return result


def simulated(cfg: generator.GeneratorConfig, ticks: int, chunk: int) -> Iterator[pd.DataFrame]:
    """The benchmark's events, the same each time (each producer process generates them and keeps its share)."""
    return generator.SensorSimulator(cfg, start="2026-11-27").chunks(ticks, chunk)


def java_producer_properties(servers: str) -> str:
    """A Java producer's properties file, configured as the project's producer (`kafka_io.producer_settings`)."""
    settings = kafka_io.producer_settings()
    props = {k.replace("_", "."): settings[k] for k in JAVA_SETTINGS}
    props |= {"bootstrap.servers": servers, **kafka_io.java_security(password=True)}
    return "".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}\n" for k, v in props.items())


def producer_performance(values: list[bytes], topic: str, servers: str | None = None) -> Step:
    """Kafka's `ProducerPerformance` (the Java client, as fast as it goes) sending `values` once each."""
    servers = servers or config.load().kafka_bootstrap_servers
    jars = install.fetch_jars("kafka-tools", Layout(config.load().home).kafka_tools_jars)
    kafka_io.ensure_topic(topic, servers=servers)
    # Temporary files are created readable by their owner only: the properties may hold the SASL password.
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as payloads, tempfile.NamedTemporaryFile("w") as props:
        payloads.write(b"\n".join(values))
        payloads.flush()
        props.write(java_producer_properties(servers))
        props.flush()
        command = ["java", "-cp", f"{jars}/*", "org.apache.kafka.tools.ProducerPerformance", "--topic", topic]
        command += ["--num-records", str(len(values)), "--throughput", "-1", "--payload-file", payloads.name]
        command += ["--producer.config", props.name]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        seconds = time.perf_counter() - started
    found = SENT.findall(done.stdout)
    if done.returncode != 0 or not found:
        raise UserError(f"ProducerPerformance failed: {(done.stderr or done.stdout)[-800:]}")
    sent, rate = int(found[-1][0]), float(found[-1][1])
    # Its own rate (records / its send loop's time) leaves out the JVM's start, which the wall time includes.
    return Step(REFERENCE, sent / rate if rate > 0 else seconds, sent, sent, {"with JVM start": seconds})
