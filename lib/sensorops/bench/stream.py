"""Benchmark of the stream job: sustained throughput and produce-to-feature latency (`sensorops bench stream`).

Throughput: a backlog of events is produced first, then a fresh job drains it with every sink on; the rate is
records read per second between the first and the last record. Latency: events are offered at a steady rate
with `timestamp` = the moment they are sent; a consumer of the features topic measures arrival - timestamp.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import orjson

from sensorops import events, flink, generator, kafka_io, stream
from sensorops.errors import UserError
from sensorops.waiting import wait_until


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


def throughput(n_events: int = 1_000_000, n_sensors: int = 100, parallelism: int = 1) -> dict[str, float]:
    """Events per second the job sustains draining a backlog of `n_events`, archive and all sinks on."""
    cfg = stream.StreamJobConfig.scratch("bench", uuid.uuid4().hex[:8], parallelism=parallelism)
    duration = n_events * 0.5 / n_sensors
    kafka_io.produce(
        generator.simulate(n_sensors=n_sensors, duration_s=duration, seed=7), topic=cfg.source_topic, workers=2
    )
    try:
        job_id, _ = stream.submit(cfg)
        flink.wait_running(job_id, timeout=120)
        samples: list[tuple[float, int]] = []  # (monotonic time, records read) once reading has begun

        def records_read() -> int:
            seen = stream.status(job_id=job_id).records_in
            if seen:
                samples.append((time.monotonic(), seen))
            return seen

        wait_until(
            records_read,
            lambda seen: seen >= n_events,
            timeout=1800,
            interval=1,
            message=lambda seen: f"the job read {seen:,} of {n_events:,} events",
        )
        (first_t, first_n), (last_t, seen) = samples[0], samples[-1]
        rate = (seen - first_n) / max(last_t - first_t, 1e-9)
        return {"events": float(seen), "seconds": last_t - first_t, "events_per_s": rate}
    finally:
        stream.remove(cfg)


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
