"""`sensorops bench generate|stream`: benchmarks that print figures (the measuring is in `sensorops.bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from pathlib import Path

from sensorops import config, kafka_io
from sensorops.bench import generate, score, stream
from sensorops.errors import UserError

RESULTS = config.ROOT / "_build" / "bench"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures")
    what = p.add_subparsers(dest="bench", required=True)
    g = what.add_parser("generate", help="generator -> Kafka acks=all: events/s and the time per step")
    g.add_argument("--events", type=int, default=500_000, help="events per run (default 500,000)")
    g.add_argument("--sensors", type=int, default=100, help="sensors (default 100)")
    g.add_argument("--workers", default="1,2", help="producer process counts to compare (default 1,2)")
    g.add_argument("--kafka-servers", default=None, help="bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS)")
    g.add_argument("--output", default=str(RESULTS / "generate.json"), help="where the figures are written as JSON")
    g.set_defaults(handler=run_generate)
    s = what.add_parser(
        "stream", help="stream job against pure Flink SQL on the same backlog: events/s, ratio; and latency"
    )
    s.add_argument("--events", type=int, default=1_000_000, help="backlog for the throughput run (default 1000000)")
    s.add_argument("--rate", type=float, default=1000.0, help="offered events/s for the latency runs (default 1000)")
    s.add_argument("--duration", type=float, default=30.0, help="seconds of each latency run (default 30)")
    s.add_argument("--parallelism", type=int, default=1, help="of both jobs in the throughput run (default 1)")
    s.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="throughput runs of each job, in the order project, reference, reference, project, ...; each keeps its "
        "fastest (default 2)",
    )
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Flink configuration for the project's job in the throughput run (repeatable)",
    )
    s.add_argument(
        "--exactly-once-intervals",
        default="10,1",
        help="checkpoint intervals (s) of the exactly-once latency runs: a row is visible once its checkpoint "
        "completes (default 10,1: the job's default, and the shortest this state allows)",
    )
    s.add_argument("--skip-throughput", action="store_true")
    s.add_argument("--skip-latency", action="store_true")
    s.add_argument("--output", default=str(RESULTS / "stream.json"), help="where the figures are written as JSON")
    s.set_defaults(handler=run_stream)
    c = what.add_parser("score", help="stream and scoring jobs together: events/s, latency to score and alert, swap")
    c.add_argument("--events", type=int, default=300_000, help="backlog for the throughput run (default 300000)")
    c.add_argument("--rate", type=float, default=1000.0, help="readings/s of the live run (default 1000)")
    c.add_argument("--duration", type=float, default=60.0, help="seconds of the live run (default 60)")
    c.add_argument("--output", default=str(RESULTS / "score.json"), help="where the figures are written as JSON")
    c.set_defaults(handler=run_score)


def _print_step(step: generate.Step) -> None:
    rate = f"{step.events_per_s:>12,.0f} events/s" if step.seconds > 0 else " " * 12 + "-"
    line = f"  {step.label:<24} {step.seconds:7.2f} s {rate}"
    if step.acknowledged is not None:
        line += f"  acked {step.acknowledged:,}"
    if step.timings:
        line += "  (" + ", ".join(f"{k} {v:.2f} s" for k, v in step.timings.items()) + ")"
    print(line)


def run_generate(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        kafka_io.quiet_client_logs()
    try:
        workers = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise UserError(f"--workers takes a comma-separated list of counts, got {args.workers!r}") from None
    result = generate.run(args.events, args.sensors, workers, args.kafka_servers, progress=_print_step, on_setup=print)
    rates = {s.label: s.events_per_s for s in result.steps}
    ratio = rates["client only (1 process)"] / rates[generate.REFERENCE]
    print(f"the project's client against {generate.REFERENCE}: {ratio:.2f} of the limit")
    best = max((label for label in rates if label.startswith("end to end")), key=rates.__getitem__)
    end_to_end = rates[best] / rates[generate.REFERENCE]
    print(f"generating and sending ({best}) against it: {end_to_end:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    figures = {"client_to_reference": ratio, "best_end_to_end": best, "end_to_end_to_reference": end_to_end}
    _write(args.output, {**dataclasses.asdict(result), **figures})
    return 0


def run_stream(args: argparse.Namespace) -> int:
    for name, value in (("events", args.events), ("rate", args.rate), ("duration", args.duration)):
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name} must be a positive number, got {value}")
    if args.parallelism < 1:
        raise UserError(f"--parallelism must be at least 1, got {args.parallelism}")
    if bad := [s for s in args.set if "=" not in s]:
        raise UserError(f"--set takes KEY=VALUE, got {bad[0]!r}")
    settings = dict(s.split("=", 1) for s in args.set)
    try:
        intervals = [float(i) for i in args.exactly_once_intervals.split(",")]
    except ValueError:
        raise UserError(
            f"--exactly-once-intervals takes seconds, comma-separated: {args.exactly_once_intervals!r}"
        ) from None
    kafka_io.quiet_client_logs()
    figures: dict = {}
    if not args.skip_throughput:
        t = stream.throughput(args.events, parallelism=args.parallelism, settings=settings, rounds=args.rounds)
        extra = f", {', '.join(f'{k}={v}' for k, v in settings.items())}" if settings else ""
        rounds = f", the faster of {t.rounds} runs each" if t.rounds > 1 else ""
        print(f"throughput  backlog of {t.events:,} events, parallelism {t.parallelism}{extra}{rounds}")
        for label, drain in (("project", t.project), ("reference", t.reference)):
            each = f"; runs {', '.join(f'{r:,.0f}' for r in t.runs[label])}" if t.rounds > 1 else ""
            print(
                f"  {label:<10} {drain.events_per_s:>9,.0f} events/s  ({drain.rows:,} feature rows in "
                f"{drain.seconds:.2f} s; job {drain.job_s:.1f} s in all{each})"
            )
        print(f"  the project's job against {stream.REFERENCE}: {t.ratio:.2f} of the limit")
        figures["throughput"] = {**dataclasses.asdict(t), "project_to_reference": t.ratio}
    if not args.skip_latency:
        figures["latency"] = []
        runs = [("at-least-once", 10.0), *(("exactly-once", i) for i in intervals)]
        for guarantee, interval in runs:
            r = stream.latency(args.rate, args.duration, guarantee, checkpoint_interval_s=interval)
            print(
                f"latency     {guarantee:<14} checkpoints every {interval:g} s  offered {r.offered_per_s:,.0f}/s  "
                f"received {r.received:,}/{r.sent:,}  p50 {r.p50_ms:,.0f} ms  p95 {r.p95_ms:,.0f} ms  "
                f"p99 {r.p99_ms:,.0f} ms"
            )
            figures["latency"].append({k: v for k, v in dataclasses.asdict(r).items() if k != "samples"})
    _write(args.output, figures)
    return 0


def run_score(args: argparse.Namespace) -> int:
    for name, value in (("events", args.events), ("rate", args.rate), ("duration", args.duration)):
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name} must be a positive number, got {value}")
    kafka_io.quiet_client_logs()
    setup = score.Setup()
    try:
        kind = setup.start()
        t = score.throughput(setup, args.events)
        print(
            f"throughput  backlog of {t['events']:,.0f} events, {kind} champion, parallelism 1:\n"
            f"            stream job {t['stream_events_per_s']:,.0f} events/s, then the scoring job "
            f"{t['scoring_events_per_s']:,.0f} events/s on the features (the stream job beside it)"
        )
        live = score.live(setup, args.rate, args.duration)
    finally:
        setup.remove()
    print(
        f"live        offered {live['offered_per_s']:,.0f} readings/s for {args.duration:g} s: scored "
        f"{live['scored']:,} of {live['sent']:,} sent, {live['scored_twice']} twice"
    )
    for label, key in (
        ("event -> feature row", "to_feature"),
        ("feature row -> score", "feature_to_score"),
        ("event -> score", "to_score"),
        ("event -> alert", "to_alert"),
    ):
        p = live[key]
        print(f"  {label:<22} p50 {p['p50_ms']:7,.0f} ms  p95 {p['p95_ms']:7,.0f} ms  p99 {p['p99_ms']:7,.0f} ms")
    print(f"  alias moved -> first score by the new version: {live['alias_move_to_new_version_s']:.1f} s")
    pw = live["pointwise"]
    print(f"  point-wise  precision {pw['precision']:.3f}  recall {pw['recall']:.3f}  f1 {pw['f1']:.3f}")
    for row in live["detection"]:
        print(
            f"  {row['anomaly_type']:<10} {row['detected']:>4}/{row['episodes']:<4} episodes detected "
            f"({row['detection_rate']:.2f}), median delay {row['median_delay_s']:.1f} s"
        )
    print(
        f"  {live['alert_episodes']} alert episodes, "
        f"{live['false_alarm_episodes_per_sensor_hour']:.2f} false-alarm episodes per sensor-hour"
    )
    _write(args.output, {"throughput": t, "live": live, "champion": kind})
    return 0


def _write(path: str, figures: dict) -> None:
    """The figures as JSON, for the book's performance chapter, with the load average and the platform's resident
    memory at the end (`sensorops platform status` per service)."""
    from sensorops.platform import local

    memory = {r.service: round(r.resident_mib) for r in local.status()}
    print(f"resident memory of the platform after the run: {sum(memory.values()) / 1024:.1f} GiB")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = {**figures, "load_average": os.getloadavg()[0], "resident_mib": memory}
    out.write_text(json.dumps(figures, indent=2, default=float))
    print(f"written to {out}")
