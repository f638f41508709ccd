"""`sensorops score submit|status|cancel`: the scoring job on Flink; `sensorops alerts tail`: its alerts, one a line."""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime
from typing import Any

from sensorops import config, flink, kafka_io, registry, scoring
from sensorops.cli.stream import print_status
from sensorops.errors import UserError
from sensorops.scoring.alerts import EpisodeRule
from sensorops.scoring.job import MODEL_COUNTERS

MODEL_METRICS = [f"{role}_{name}" for role in scoring.ROLES for name in MODEL_COUNTERS]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score the features topic with the registry's champion, raise alerts (Flink)")
    actions = p.add_subparsers(dest="action", required=True)
    s = actions.add_parser("submit", help="submit the scoring job, unless a job of that name is already running")
    _name(s)
    s.add_argument("--features-topic", default=config.FEATURES_TOPIC)
    s.add_argument("--model-name", default=registry.MODEL_NAME)
    s.add_argument("--no-shadow", action="store_true", help=f"do not score the @{registry.CHALLENGER} beside")
    s.add_argument("--poll", type=float, default=30.0, help="seconds between registry polls (default 30)")
    rule = EpisodeRule()
    s.add_argument(
        "--k", type=int, default=rule.k, help=f"an alert opens at k flagged of n readings (default {rule.k})"
    )
    s.add_argument("--n", type=int, default=rule.n, help=f"(default {rule.n})")
    s.add_argument("--m", type=int, default=rule.m, help=f"and closes after m normal readings (default {rule.m})")
    s.add_argument("--parallelism", type=int, default=1)
    s.add_argument("--fresh", action="store_true", help="ignore the checkpoint of a cancelled run")
    s.add_argument("--wait", action="store_true", help="return once all tasks run")
    s.set_defaults(handler=run_submit)
    st = actions.add_parser("status", help="state, records, the model versions in use (exit 1 unless RUNNING)")
    _name(st)
    st.add_argument("--model-name", default=registry.MODEL_NAME, help="the registered model the job scores with")
    st.set_defaults(handler=run_status)
    c = actions.add_parser("cancel", help="cancel the job, keeping its last checkpoint to resume from")
    _name(c)
    c.set_defaults(handler=run_cancel)

    a = sub.add_parser("alerts", help="the alert episodes the scoring job raises")
    tail = a.add_subparsers(dest="action", required=True).add_parser("tail", help="print alerts, one line each")
    tail.add_argument("--topic", default=config.ALERTS_TOPIC)
    tail.add_argument("--last", type=int, default=20, help="start with the last N alerts (default 20)")
    tail.add_argument("--follow", type=float, default=0, help="keep printing new alerts for N seconds")
    tail.set_defaults(handler=run_tail)


def _name(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", default=scoring.DEFAULT_JOB_NAME, help=f"job name (default {scoring.DEFAULT_JOB_NAME})")


def run_submit(args: argparse.Namespace) -> int:
    if not (args.poll > 0 and args.parallelism > 0):
        raise UserError("--poll and --parallelism must be positive")
    cfg = scoring.ScoringJobConfig(
        name=args.name,
        features_topic=args.features_topic,
        model_name=args.model_name,
        challenger_alias="" if args.no_shadow else registry.CHALLENGER,
        poll_s=args.poll,
        alert_rule=EpisodeRule(args.k, args.n, args.m),
        parallelism=args.parallelism,
    )
    job_id, started = scoring.submit(cfg, fresh=args.fresh)
    print(f"{'submitted' if started else 'already running'}: {cfg.name} {job_id}")
    if args.wait:
        flink.wait_running(job_id)
    _print_models(cfg.model_name, job_id)
    return 0


def _print_models(model_name: str, job_id: str) -> None:
    """Which versions the registry's aliases name, and which ones the job's workers score with."""
    in_use = flink.user_metrics(job_id, MODEL_METRICS)
    for role in scoring.ROLES:
        named = registry.alias_version(model_name, role)
        used = in_use.get(f"{role}_version", 0)
        scoring_with = f"scoring with version {used:.0f}" if used > 0 else "not scoring yet"
        if named is None:
            scoring_with = "waiting for it to be registered" if role == "champion" else "no shadow scoring"
        failures = in_use.get(f"{role}_registry_failures", 0)
        print(f"  {role:<11} models:/{model_name}@{role} -> {named or '(none)'}; {scoring_with}", end="")
        print(f", {failures:.0f} registry polls failed" if failures else "")


def run_status(args: argparse.Namespace) -> int:
    s = scoring.status(args.name)
    print_status(s)
    if s.running:
        _print_models(args.model_name, s.job_id)
    return 0 if s.healthy else 1


def run_cancel(args: argparse.Namespace) -> int:
    final = scoring.cancel(args.name)
    if final is None:
        print(f"no running job called {args.name}")
        return 0
    print(f"{final.state}: {final.name} {final.job_id}")
    return 0


def _known(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _ms(value: float | None) -> str:
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%H:%M:%S") if _known(value) else "-"


def alert_line(alert: dict[str, Any]) -> str:
    """One alert change as a line: when, sensor, status, severity, span, flagged readings, peak score, model."""
    closed = alert.get("closed_at_ms")
    span = f"{_ms(alert['first_reading_ms'])}-{_ms(closed if _known(closed) else alert['last_reading_ms'])}"
    return (
        f"{_ms(alert['emitted_ms'])}  {alert['sensor_id']:<12} {alert['status'].upper():<7} {alert['severity']:<8} "
        f"{span}  {alert['flagged']:>3}/{alert['readings']:<3} flagged  peak {alert['peak_score']:.2f}  "
        f"v{alert['model_version']}"
    )


def run_tail(args: argparse.Namespace) -> int:
    if args.last < 0 or args.follow < 0:
        raise UserError("--last and --follow must not be negative")
    shown = 0
    for alert in kafka_io.read(args.topic, last=args.last, timeout_s=10):
        print(alert_line(alert))
        shown += 1
    deadline = time.monotonic() + args.follow
    while (left := deadline - time.monotonic()) > 0:
        for alert in kafka_io.read(args.topic, start="end", timeout_s=min(left, 5.0)):
            print(alert_line(alert), flush=True)
            shown += 1
    if not shown:
        print(f"no alerts in {args.topic}")
    return 0
