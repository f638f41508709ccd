"""Fault drills (`make drill`): each drill records one row of the ledger; the table is printed at the end and kept
for the book's reliability page (`book/data/drills.md`, included by `book/reliability.md`)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from sensorops import config

RESULTS = config.ROOT / "_build" / "drills"
BOOK_TABLE = config.ROOT / "book" / "data" / "drills.md"
COLUMNS = {
    "drill": "drill",
    "sent": "events sent",
    "acked": "acked",
    "hostile": "of which hostile",
    "lost": "lost",
    "duplicated": "duplicated (exactly-once sinks)",
    "features_duplicates": "features repeated (at-least-once)",
    "unacked_stored": "stored, not acked",
    "restarts": "job restarts",
    "recovered_s": "running again (s)",
    "drained_s": "lag drained (s)",
}


@pytest.fixture(scope="session")
def record_drill():
    """Keep one drill's ledger row (a dict with `COLUMNS`) for the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        row = {**row, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        name = re.sub(r"[^\w.-]+", "-", row["drill"])  # "events/s" in a name must not make a directory
        (RESULTS / f"{name}.json").write_text(json.dumps(row, indent=2))

    return record


def _table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row.get(key, "") for key in COLUMNS]
        lines.append("| " + " | ".join(f"{c:,}" if isinstance(c, int) else str(c) for c in cells) + " |")
    return "\n".join(lines)


def _load_note(row: dict) -> str:
    peak_lag = max(x["lag"] for x in row["samples"])
    return (
        f"Load: {row['drill'].removeprefix('load: ')} offered, {row['achieved_rate']:,} events/s acknowledged (the "
        f"producer's own limit on this machine); source lag at most {peak_lag:,} records, checkpoints at most "
        f"{row['max_checkpoint_s']:.1f} s, the TaskManager with its Python workers at most "
        f"{row['max_taskmanager_mb']:,} MiB resident; {row['restarts']} restarts."
    )


def ledger() -> str:
    """The table of the last run of each drill, with a line on the load test."""
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))] if RESULTS.exists() else []
    rows = [r for r in rows if "lost" in r]
    if not rows:
        return ""
    machine = f"{Path('/proc/cpuinfo').read_text().count('processor')} cores"
    notes = [_load_note(r) for r in rows if "achieved_rate" in r]
    return "\n\n".join([f"Last `make drill`: {max(r['finished'] for r in rows)}, on {machine}.", _table(rows), *notes])


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 (pytest's hook signature)
    text = ledger()
    if not text:
        return
    terminalreporter.write_sep("=", "fault drill ledger")
    terminalreporter.write_line(text)
    if exitstatus == 0:
        BOOK_TABLE.parent.mkdir(parents=True, exist_ok=True)
        BOOK_TABLE.write_text(text + "\n")
