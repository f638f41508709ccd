"""`sensorops bench generate|stream`: events/s from the generator to acknowledged in Kafka (acks=all), and where the
time goes; the stream job's throughput and latency (`cli/bench_stream.py`)."""

from __future__ import annotations

import argparse
import os
import time
import uuid

import kafka

from sensorops import config, generator, kafka_io
from sensorops.cli import bench_stream
from sensorops.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures")
    what = p.add_subparsers(dest="bench", required=True)
    g = what.add_parser("generate", help="generator -> Kafka acks=all: events/s and the time per step")
    g.add_argument("--events", type=int, default=500_000, help="events per run (default 500,000)")
    g.add_argument("--sensors", type=int, default=100, help="sensors (default 100)")
    g.add_argument("--workers", default="1,2", help="producer process counts to compare (default 1,2)")
    g.add_argument("--kafka-servers", default=None, help="bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)")
    g.set_defaults(handler=run_generate)
    s = what.add_parser("stream", help="stream job: sustained events/s and produce-to-feature latency")
    bench_stream.add_arguments(s)
    s.set_defaults(handler=bench_stream.run)


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>12,.0f} events/s" if seconds > 0 else " " * 12 + "-"


def run_generate(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        kafka_io.quiet_client_logs()
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise UserError(f"--workers takes a comma-separated list of counts, got {args.workers!r}") from None
    if args.events < args.sensors or args.sensors < 1 or min(workers) < 1:
        raise UserError("need --sensors >= 1, --events >= --sensors and worker counts >= 1")
    servers = args.kafka_servers or config.load().kafka_bootstrap_servers
    cfg = generator.GeneratorConfig(n_sensors=args.sensors, interval_s=1.0)
    ticks = args.events // args.sensors
    n = ticks * args.sensors
    chunk = max(1, 20_000 // args.sensors)

    def frames():  # noqa: ANN202
        return generator.SensorSimulator(cfg, start="2026-11-27").chunks(ticks, chunk)

    from kafka.record.util import crc32c_c

    print(f"{n:,} events, {args.sensors} sensors, batches of {chunk * args.sensors:,}; kafka-python {kafka.__version__}, "
          f"compression {kafka_io.best_compression()}, crc32c {'C' if crc32c_c else 'pure Python (pip install crc32c)'}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    t0 = time.perf_counter()
    batches = list(frames())
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    serialised = [generator.serialize(b) for b in batches]
    ser_s = time.perf_counter() - t0
    del batches
    print(f"  generation only          {gen_s:7.2f} s {_rate(n, gen_s)}")
    print(f"  serialisation only       {ser_s:7.2f} s {_rate(n, ser_s)}")
    topics = []
    try:
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        topics.append(topic)
        r = kafka_io.produce(serialised, topic, servers, raise_on_failure=False)
        print(f"  client only (1 process)  {r.seconds:7.2f} s {_rate(r.acknowledged, r.seconds)}  acked {r.acknowledged:,}/{n:,}")
        del serialised
        for w in workers:
            topic = f"bench-{uuid.uuid4().hex[:8]}"
            topics.append(topic)
            r = kafka_io.produce(frames(), topic, servers, workers=w, raise_on_failure=False)
            steps = ", ".join(f"{k} {v:.2f} s" for k, v in r.timings.items())
            print(f"  end to end, {w} process{'es' if w > 1 else '  '} {r.seconds:7.2f} s {_rate(r.acknowledged, r.seconds)}"
                  f"  acked {r.acknowledged:,}/{n:,}  ({steps})")  # fmt: skip
    finally:
        for t in topics:
            kafka_io.delete_topic(t, servers)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0
