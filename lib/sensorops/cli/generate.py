"""`sensorops generate`: simulated sensor readings into Kafka, live (real time) or backfill (as fast as possible)."""

from __future__ import annotations

import argparse
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from sensorops import config, drifts, events, generator, kafka_io
from sensorops.errors import UserError

MAX_BACKFILL_DAYS = 366 * 30
"""Longer than 2000 .. now: event times outside that range are dead letters (`events.in_time_range`)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="simulate sensors and produce their readings to Kafka")
    p.add_argument(
        "--kafka-servers", default=None, help="bootstrap servers (default: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)"
    )
    p.add_argument(
        "--topic", default=config.SENSOR_TOPIC, help=f"topic, created if missing (default {config.SENSOR_TOPIC})"
    )
    p.add_argument("--sensors", type=int, default=25, help="number of sensors (default 25)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between two readings of a sensor (default 0.5)")
    p.add_argument(
        "--duration", type=float, default=None, help="seconds to run (live, default 60) or of event time (backfill)"
    )
    p.add_argument(
        "--anomaly-rate", type=float, default=0.08, help="share of anomalous readings, 0 to 0.5 (default 0.08)"
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--mode", choices=("live", "backfill"), default="live", help="live: real time; backfill: as fast as possible"
    )
    p.add_argument("--days", type=float, default=None, help="backfill: days of event time, ending now (default 1)")
    p.add_argument("--start", default=None, help="backfill: first timestamp, ISO-8601 (default: now minus the span)")
    p.add_argument(
        "--partitions", type=int, default=kafka_io.DEFAULT_PARTITIONS, help="partitions if the topic is created"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="producer processes, each owning some partitions (default: 2 in backfill, 1 live)",
    )
    d = p.add_argument_group("drift injection (off unless --drift is given)")
    d.add_argument(
        "--drift", choices=drifts.DRIFT_SIZES, default=None,
        help="firmware: an update offsets some sensors' baselines; season: the whole climate moves",
    )  # fmt: skip
    d.add_argument("--drift-at", type=float, default=None, help="seconds of event time after the start (default 0)")
    d.add_argument(
        "--drift-size", type=float, default=None,
        help="offset in the channel's unit (firmware, default +3) or degC (season, default -3; humidity moves "
        f"{drifts.SEASON_RH_PER_DEGREE:g} %%RH per degC with it)",
    )  # fmt: skip
    d.add_argument("--drift-share", type=float, default=None, help="firmware: share of sensors updated (default 0.3)")
    d.add_argument(
        "--drift-channels", default=None, help="firmware: comma-separated channels offset (default temperature)"
    )
    d.add_argument("--drift-ramp", type=float, default=None, help="seconds over which it sets in (default 0: a step)")
    p.set_defaults(handler=run)


def drift_config(args: argparse.Namespace) -> drifts.DriftConfig | None:
    """The drift the flags ask for; a `--drift-*` flag without `--drift` is an error."""
    names = ("drift_at", "drift_size", "drift_share", "drift_channels", "drift_ramp")
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) is not None]
    if getattr(args, "drift", None) is None:
        if given:
            raise UserError(f"{', '.join(given)}: only with --drift firmware or --drift season")
        return None
    if args.drift == "season" and (args.drift_share is not None or args.drift_channels is not None):
        raise UserError("--drift-share and --drift-channels are for --drift firmware; a season moves every sensor")
    channels = tuple(c.strip() for c in (args.drift_channels or "temperature").split(",") if c.strip())
    defaults = drifts.DriftConfig()
    return drifts.DriftConfig(
        kind=args.drift,
        at_s=defaults.at_s if args.drift_at is None else args.drift_at,
        size=args.drift_size,
        share=defaults.share if args.drift_share is None else args.drift_share,
        channels=channels,
        ramp_s=defaults.ramp_s if args.drift_ramp is None else args.drift_ramp,
    )


def _check(args: argparse.Namespace) -> None:
    if args.mode == "live" and args.days is not None:
        raise UserError("--days is for --mode backfill; use --duration (seconds) in live mode")
    for name in ("duration", "days"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name} must be positive, got {value}")
    span_s = (args.duration or 0.0) + (args.days or 0.0) * 86400
    if args.mode == "backfill" and span_s > MAX_BACKFILL_DAYS * 86400:
        raise UserError(
            f"a backfill of {span_s / 86400:,.0f} days does not fit in 2000 .. now, the event times the stream job "
            f"accepts; ask for at most {MAX_BACKFILL_DAYS:,} days"
        )
    if args.workers is None:
        args.workers = 2 if args.mode == "backfill" else 1
    if args.partitions < 1 or args.workers < 1:
        raise UserError("--partitions and --workers must be at least 1")
    if args.anomaly_rate > 0.5 or args.anomaly_rate < 0:
        raise UserError(f"--anomaly-rate must be between 0 and 0.5, got {args.anomaly_rate}")


def _until_interrupted(frames: Iterable[pd.DataFrame], counts: Counter, bar: tqdm) -> Iterator[pd.DataFrame]:
    """Pass frames through, counting anomaly types; Ctrl-C ends the run cleanly (the report still prints)."""
    it = iter(frames)
    while True:
        try:
            frame = next(it)
        except (StopIteration, KeyboardInterrupt):
            return
        counts.update(frame["anomaly_type"].astype(str).value_counts().to_dict())
        bar.update(len(frame))
        yield frame


def run(args: argparse.Namespace) -> int:
    _check(args)
    if not getattr(args, "verbose", False):
        kafka_io.quiet_client_logs()
    drift = drift_config(args)
    cfg = generator.GeneratorConfig(
        n_sensors=args.sensors, interval_s=args.interval, anomaly_rate=args.anomaly_rate, seed=args.seed, drift=drift
    )
    if args.mode == "live":
        duration = args.duration or 60.0
        sim = generator.SensorSimulator(cfg)  # starts now
        frames: Iterable[pd.DataFrame] = sim.live(duration)
        total = args.sensors * generator.ticks_for(duration, None, args.interval)
        what = f"live for {duration:g} s"
    else:
        days = args.days if args.days is not None else (None if args.duration else 1.0)
        ticks = generator.ticks_for(args.duration if days is None else None, days, args.interval)
        span = pd.Timedelta(seconds=ticks * args.interval)
        start = args.start or (pd.Timestamp.now(tz="UTC") - span).floor("s")
        try:
            sim = generator.SensorSimulator(cfg, start=start)
        except ValueError as exc:
            raise UserError(f"--start {args.start!r} is not a timestamp: {exc}") from None
        first_ms = int(np.datetime64(sim.start, "ms").astype(np.int64))  # not pandas: year 9999 overflows its ns
        if not (events.in_time_range(first_ms) and events.in_time_range(first_ms + ticks * args.interval * 1000)):
            raise UserError(
                f"--start {args.start} puts event times outside 2000 .. a day from now, where the stream job would "
                "send every event to the dead-letter topic (out_of_range); choose a start in that range"
            )
        frames = sim.chunks(ticks, chunk_ticks=max(1, 20_000 // args.sensors))
        total = args.sensors * ticks
        what = f"backfill of {span} of event time from {pd.Timestamp(sim.start).isoformat()}Z"
    servers = args.kafka_servers or config.load().kafka_bootstrap_servers
    print(
        f"{args.sensors} sensors every {args.interval:g} s, {what}, anomaly rate {args.anomaly_rate:g}, "
        f"to topic {args.topic!r} at {servers}"
    )
    if drift is not None:
        print(f"drift: {drift}")
    counts: Counter = Counter()
    with tqdm(total=total, unit="ev", unit_scale=True, disable=None, leave=False) as bar:
        try:
            report = kafka_io.produce(
                _until_interrupted(frames, counts, bar),
                args.topic,
                servers,
                workers=args.workers,
                partitions=args.partitions,
                raise_on_failure=False,
            )
        except KeyboardInterrupt:
            raise UserError("interrupted while sending; some events may not have been delivered") from None
    print(report)
    produced = sum(counts.values())
    if produced:
        mix = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if k != "none")
        print(f"anomalies: {produced - counts.get('none', 0):,} of {produced:,} ({mix or 'none'})")
    if not report.ok:
        raise kafka_io.DeliveryError(report, servers, kafka_io.producer_settings()["delivery_timeout_ms"] / 1000)
    logging.getLogger(__name__).debug("timings %s", report.timings)
    return 0
