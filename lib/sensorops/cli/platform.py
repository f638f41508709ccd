"""`sensorops platform up|status|down|clean`: the local platform."""

from __future__ import annotations

import argparse

from sensorops import config
from sensorops.errors import UserError
from sensorops.platform import local
from sensorops.platform.health import SERVICES

WIDTH = max(map(len, SERVICES))
"""The service column of `up` and `status`."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("platform", help="start, inspect and stop the local platform")
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="install what is missing, start everything, wait until healthy")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for health (default 300)")
    up.set_defaults(handler=_up)
    actions.add_parser(
        "status", help="per service: up or down, URL, PIDs, memory (exit 1 if any is down)"
    ).set_defaults(handler=_status)
    actions.add_parser("down", help="stop every service (data is kept)").set_defaults(handler=_down)
    actions.add_parser("clean", help="stop everything and delete the platform's data").set_defaults(handler=_clean)


def _up(args: argparse.Namespace) -> int:
    local.require_extra()
    results = local.up(timeout=args.timeout)
    print("The platform is up:")
    for h in results.values():
        print(f"  {h.service:<{WIDTH}} {h.url:<24} {h.version}")
    s = config.load()
    print(f"Credentials (S3 keys, Airflow login {s.airflow_username}) are in {config.ENV_FILE};", end=" ")
    print(f"logs in {s.home / 'logs'}.")
    return 0


def _status(args: argparse.Namespace) -> int:
    local.require_extra()
    rows = local.status()
    for r in rows:
        pids = ",".join(map(str, r.pids)) or "-"
        memory = f"{r.resident_mib:5,.0f} MiB" if r.pids else " " * 9
        print(f"{r.service:<{WIDTH}} {'up' if r.ok else 'DOWN':<5} {r.url:<24} pid {pids:<14} {memory}  {r.detail}")
    print(f"{'':<{WIDTH}} resident memory of the platform: {sum(r.resident_mib for r in rows) / 1024:.1f} GiB")
    return 0 if all(r.ok for r in rows) else 1


def _down(args: argparse.Namespace) -> int:
    local.require_extra()
    if local.supervisor(local.layout()) is not None:
        _stop_jobs_with_savepoints()
    print("Stopped the platform; its data is kept." if local.down() else "Nothing was running.")
    return 0


def _stop_jobs_with_savepoints() -> None:
    """Every running Flink job stops with a savepoint, from which submitting it again resumes it."""
    from sensorops import flink
    from sensorops.waiting import TimedOut

    try:
        stopped = flink.stop_all()
    except (UserError, TimedOut) as exc:  # the platform stops all the same; the jobs resume from their checkpoints
        print(f"Could not stop the Flink jobs with a savepoint ({exc}); they resume from their last checkpoint.")
        return
    for name, where in stopped.items():
        print(f"Stopped job {name}; submitting it again resumes it from {where or 'its start'}.")


def _clean(args: argparse.Namespace) -> int:
    local.require_extra()
    local.clean()
    print(f"Stopped the platform and deleted {config.load().home}.")
    return 0
