"""A drill hook, off by default: kill a step's process at a chosen point, once per run, to prove retries are safe.

A run triggered with `conf={"fault": "after:generate_batch"}` (one of `context.FAULTS`) dies hard, as a SIGKILL
would (`os._exit(137)`: no cleanup, no exception handler, no XCom), right after the step's side effect and before
it records it. Before dying it writes a marker object next to the run's manifest, so the retry Airflow schedules
runs through that point and has to recover what the killed attempt left behind. The drills in `tests/drills/`
trigger such runs and check that the retry neither repeats nor skips anything. Never set `fault` in a run that
matters; from a notebook it would kill the kernel.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

from sensorops.pipeline import store
from sensorops.pipeline.context import FAULTS, RunContext

log = logging.getLogger(__name__)

EXIT_KILLED = 137
"""What a shell reports for a process killed by SIGKILL (128 + 9)."""


def marker_key(ctx: RunContext, point: str) -> str:
    """The object that records that this run's process was already killed at `point`."""
    return ctx.key(f"fault-{point.replace(':', '-')}.json")


def should_die(fault: str, point: str, already_died: bool) -> bool:
    """Whether the process dies at `point`: the run asked for this fault, and no earlier attempt died there."""
    if point not in FAULTS:
        raise ValueError(f"unknown fault point {point!r}; the points are {', '.join(FAULTS)}")
    return fault == point and not already_died


def inject(ctx: RunContext, point: str) -> None:
    """Die at `point` if the run's `fault` parameter names it and no earlier attempt of the run died there."""
    if ctx.params.fault != point:  # the usual case: no S3 request
        return
    key = marker_key(ctx, point)
    if not should_die(ctx.params.fault, point, store.read_json(key) is not None):
        log.warning("drill: an earlier attempt of run %s was killed at %s; carrying on", ctx.run_id, point)
        return
    stamp = {"run_id": ctx.run_id, "point": point, "pid": os.getpid(), "at": datetime.now(UTC).isoformat()}
    store.put(key, json.dumps(stamp).encode(), "application/json")
    log.warning("drill: killing this attempt of run %s at %s (exit %d)", ctx.run_id, point, EXIT_KILLED)
    _flush()
    os._exit(EXIT_KILLED)


def _flush() -> None:
    """Write out the log line above (os._exit flushes nothing)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
