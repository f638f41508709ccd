"""Benchmark of the stream job: sustained throughput and produce-to-feature latency.

Not a registered stage: `sensorops bench stream` calls `add_arguments` and `run` (wired in `cli/bench.py`).
Throughput: a backlog of events is produced first, then a fresh job drains it with every sink on; the rate is
records read per second between the first and the last record. Latency: events are offered at a steady rate
with `timestamp` = the moment they are sent; a consumer of the features topic measures arrival - timestamp.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from sensorops import config, generator, kafka_io, stream


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


def _bench_config(tag: str, **overrides) -> stream.StreamJobConfig:
    return stream.StreamJobConfig(
        name=f"bench-stream-{tag}", source_topic=f"bench-{tag}-events", features_topic=f"bench-{tag}-features",
        aggregates_topic=f"bench-{tag}-aggregates", dead_letter_topic=f"bench-{tag}-dlq",
        archive_path=f"s3://{config.ARCHIVE_BUCKET}/bench/{tag}", **overrides,
    )  # fmt: skip


def _cleanup(cfg: stream.StreamJobConfig) -> None:
    stream.cancel(cfg.name)
    for topic in (cfg.source_topic, cfg.features_topic, cfg.aggregates_topic, cfg.dead_letter_topic):
        kafka_io.delete_topic(topic)
    stream.delete_archive(cfg.archive_path)


def throughput(n_events: int = 1_000_000, n_sensors: int = 100, parallelism: int = 1) -> dict[str, float]:
    """Events per second the job sustains draining a backlog of `n_events`, archive and all sinks on."""
    cfg = _bench_config(uuid.uuid4().hex[:8], parallelism=parallelism)
    duration = n_events * 0.5 / n_sensors
    kafka_io.produce(generator.simulate(n_sensors=n_sensors, duration_s=duration, seed=7), topic=cfg.source_topic,
                     workers=2)  # fmt: skip
    try:
        job_id, _ = stream.submit(cfg)
        stream.wait_running(job_id, timeout=120)
        first = last = None
        seen = 0
        deadline = time.monotonic() + 1800
        while seen < n_events and time.monotonic() < deadline:
            seen = stream.status(job_id=job_id).records_in
            now = time.monotonic()
            if seen and first is None:
                first = (now, seen)
            last = (now, seen)
            time.sleep(1)
        assert first and last
        rate = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
        return {"events": float(seen), "seconds": last[0] - first[0], "events_per_s": rate}
    finally:
        _cleanup(cfg)


def latency(rate: float = 1000.0, duration_s: float = 30.0, guarantee: str = "at-least-once",
            checkpoint_interval_s: float = 10.0, n_sensors: int = 100) -> LatencyReport:  # fmt: skip
    """Produce-to-feature latency percentiles at a steady offered `rate` with the features sink's `guarantee`."""
    from kafka import KafkaConsumer, KafkaProducer

    cfg = _bench_config(uuid.uuid4().hex[:8], features_guarantee=guarantee,
                        checkpoint_interval_s=checkpoint_interval_s)  # fmt: skip
    settings = config.load()
    fleet = generator.to_dicts(generator.simulate(n_sensors=n_sensors, duration_s=0.5, seed=11))
    samples: list[float] = []
    stop = threading.Event()
    try:
        job_id, _ = stream.submit(cfg)
        stream.wait_running(job_id, timeout=120)
        consumer = KafkaConsumer(
            cfg.features_topic, bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
            auto_offset_reset="latest", isolation_level="read_committed" if guarantee == "exactly-once" else
            "read_uncommitted", fetch_max_wait_ms=10,
        )  # fmt: skip
        consumer.poll(timeout_ms=2000)  # join the partitions before sending

        def receive() -> None:
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    arrived = time.time()
                    for r in records:
                        ts = json.loads(r.value)["event_time"]
                        sent = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                        samples.append((arrived - sent) * 1000)

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0)
        sent = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < duration_s:
            due = int(elapsed * rate)
            while sent < due:
                event = dict(fleet[sent % len(fleet)])
                event["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace(
                    "+00:00", "Z")
                producer.send(cfg.source_topic, json.dumps(event).encode(), key=event["sensor_id"].encode())
                sent += 1
            time.sleep(0.005)
        producer.flush()
        _wait = time.monotonic() + checkpoint_interval_s * 2 + 10
        while len(samples) < sent and time.monotonic() < _wait:
            time.sleep(0.5)
        stop.set()
        receiver.join(5)
        consumer.close()
        p = np.percentile(samples, [50, 95, 99]) if samples else [float("nan")] * 3
        return LatencyReport(guarantee, rate, sent, len(samples), *map(float, p), samples=samples)
    finally:
        stop.set()
        _cleanup(cfg)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=1_000_000, help="backlog for the throughput run (default 1000000)")
    p.add_argument("--rate", type=float, default=1000.0, help="offered events/s for the latency runs (default 1000)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of each latency run (default 30)")
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-latency", action="store_true")


def run(args: argparse.Namespace) -> int:
    if not args.skip_throughput:
        t = throughput(args.events, parallelism=args.parallelism)
        print(f"throughput  {t['events_per_s']:,.0f} events/s ({t['events']:,.0f} events in {t['seconds']:.1f} s, "
              f"parallelism {args.parallelism}, all sinks and the archive on)")  # fmt: skip
    if not args.skip_latency:
        for guarantee in ("at-least-once", "exactly-once"):
            r = latency(args.rate, args.duration, guarantee)
            print(f"latency     {guarantee:<14} offered {r.offered_per_s:,.0f}/s  received {r.received:,}/{r.sent:,}"
                  f"  p50 {r.p50_ms:,.0f} ms  p95 {r.p95_ms:,.0f} ms  p99 {r.p99_ms:,.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench_stream", description=__doc__.splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
