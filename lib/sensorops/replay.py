"""Replay recorded sensor readings from a CSV file into the same topic and schema as the generator.

A column mapping says which CSV column holds which event field (``temperature=Temp_C``); a timestamp column gives
event time; an optional label column marks anomalies. Rows that do not parse are collected with their line numbers
(never dropped silently), and the rest are replayed at real speed, N times faster, or as fast as possible.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sensorops.errors import UserError
from sensorops.events import COLUMNS, in_time_range
from sensorops.generator import ANOMALY_TYPES

log = logging.getLogger(__name__)

NUMERIC_FIELDS = {"temperature": (-60, 120), "humidity": (0, 100), "pressure": (300, 1200), "battery_level": (0, 100)}
TEXT_FIELDS = ("sensor_id", "building", "room", "model", "firmware_version")
MAPPABLE = (*TEXT_FIELDS, "floor", *NUMERIC_FIELDS)
DEFAULTS = {"building": "replay", "floor": 0, "room": "replay", "model": "unknown", "firmware_version": "unknown"}
NULL_TOKENS = {"", "na", "n/a", "nan", "null", "none", "-"}
"""Cell values read as a missing reading (a dropout), case-insensitively."""
NORMAL_LABELS = {"", "0", "false", "no", "n", "f", "normal", "none", "ok"}
ANOMALY_LABELS = {"1", "true", "yes", "y", "t", "anomaly", "anomalous", "abnormal"}


@dataclass(frozen=True)
class BadRow:
    """A CSV row that was not replayed, and why. `line` is the 1-based line number in the file."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ReplayData:
    """Parsed events (the wire format's columns plus ``line``), the rows that did not parse, and how many rows."""

    events: pd.DataFrame
    bad_rows: list[BadRow] = field(default_factory=list)
    rows: int = 0


def parse_mapping(items: Iterable[str]) -> dict[str, str]:
    """``["temperature=ColA", ...]`` to ``{"temperature": "ColA"}``, checking the field names."""
    mapping: dict[str, str] = {}
    for item in items:
        target, sep, column = item.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not target or not column:
            raise UserError(f"--map expects FIELD=COLUMN, got {item!r}")
        if target not in MAPPABLE:
            raise UserError(f"cannot map {target!r}; fields are {', '.join(MAPPABLE)}")
        mapping[target] = column
    return mapping


def _label(value: str) -> tuple[bool, str] | None:
    v = value.strip().lower()
    if v in NORMAL_LABELS:
        return False, "none"
    if v in ANOMALY_TYPES[1:]:
        return True, v
    if v in ANOMALY_LABELS:
        return True, "other"
    return None


def _timestamps(raw: pd.Series) -> pd.Series:
    """Parse ISO-8601 strings (naive ones are taken as UTC) or epoch seconds/milliseconds; NaT where it cannot."""
    numeric = pd.to_numeric(raw, errors="coerce")
    if numeric.notna().all() and len(raw):
        plausible = numeric.where(numeric.abs() < 1e14)  # epoch milliseconds reach 1e14 in the year 5138
        unit = "ms" if plausible.abs().median() > 1e11 else "s"
        return pd.to_datetime(plausible, unit=unit, utc=True, errors="coerce")
    return pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")


def _lines(path: Path, delimiter: str, encoding: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, fields or None, what is wrong) for each non-blank line.

    Each physical line is parsed alone: a stray quote cannot swallow the lines after it, and a field over the csv
    module's size limit spoils its own line only.
    """
    try:
        with path.open(newline="", encoding=encoding) as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue  # a blank line holds no reading
                try:
                    yield number, next(csv.reader([line], delimiter=delimiter, strict=True)), ""
                except csv.Error as exc:
                    yield number, None, f"CSV error: {exc}"
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not {encoding} text (byte {exc.start}: {exc.reason}); "
            "give its encoding, e.g. --encoding latin-1"
        ) from None
    except LookupError:  # raised by open() for a name that is no codec, or no text codec
        raise UserError(f"unknown text encoding {encoding!r}; give one such as utf-8, latin-1 or cp1252") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions") from None


def read_csv(
    path: str | Path,
    mapping: dict[str, str],
    timestamp_column: str,
    label_column: str | None = None,
    delimiter: str = ",",
    sensor_id: str = "replay-001",
    encoding: str = "utf-8-sig",
) -> ReplayData:
    """Read and check a CSV file of readings; see :class:`ReplayData`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the CSV file in it")
    if not path.is_file():
        raise UserError(f"{path} is not a regular file; give a CSV file" if path.exists() else f"no such file: {path}")
    if not any(f in mapping for f in ("temperature", "humidity", "pressure")):
        raise UserError("map at least one of temperature, humidity, pressure (e.g. --map temperature=Temp)")
    if len(delimiter) != 1:
        raise UserError(f"the delimiter must be one character, got {delimiter!r}")
    lines: list[int] = []
    records: list[list[str]] = []
    bad: list[BadRow] = []
    rows = _lines(path, delimiter, encoding)
    _, first, problem = next(rows, (0, None, "empty"))
    if first is None:
        raise UserError(f"{path} has no header line ({problem})")
    header = [h.strip() for h in first]
    needed = {timestamp_column, *mapping.values(), *([label_column] if label_column else [])}
    missing = sorted(needed - set(header))
    if missing:
        raise UserError(f"{path} has no column(s) {missing}; its columns are {header}")
    for number, row, problem in rows:
        if row is None or len(row) != len(header):
            bad.append(BadRow(number, problem or f"{len(row)} fields, expected {len(header)}"))
            continue
        records.append(row)
        lines.append(number)
    raw = pd.DataFrame(records, columns=header, dtype=str) if records else pd.DataFrame(columns=header, dtype=str)
    n = len(raw)
    reasons: list[list[str]] = [[] for _ in range(n)]

    def flag(mask: np.ndarray, message: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask):
            reasons[i].append(message(i))

    ts = _timestamps(raw[timestamp_column].str.strip())
    flag(ts.isna().to_numpy(), lambda i: f"timestamp {raw[timestamp_column].iat[i]!r} is not a date")
    epoch_ms = ts.astype("int64", copy=False).to_numpy() // 1_000_000 if len(ts) else np.array([], dtype=np.int64)
    outside = ts.notna().to_numpy() & ~np.array([in_time_range(ms) for ms in epoch_ms], dtype=bool)
    flag(outside, lambda i: f"timestamp {raw[timestamp_column].iat[i]!r} is outside 2000 .. a day from now")

    events = pd.DataFrame(index=range(n))
    events["sensor_id"] = raw[mapping["sensor_id"]].str.strip() if "sensor_id" in mapping else sensor_id
    if "sensor_id" in mapping:
        flag((events["sensor_id"] == "").to_numpy(), lambda i: "empty sensor_id")
    events["timestamp"] = ts
    for name, (lo, hi) in NUMERIC_FIELDS.items():
        if name not in mapping:
            events[name] = np.nan
            continue
        text = raw[mapping[name]].str.strip()
        text = text.where(~text.str.lower().isin(NULL_TOKENS), "")
        values = pd.to_numeric(text, errors="coerce")
        col = mapping[name]
        flag((values.isna() & (text != "")).to_numpy(), lambda i, c=col, t=text: f"{c} {t.iat[i]!r} is not a number")
        outside = ((values < lo) | (values > hi)).to_numpy()
        flag(outside, lambda i, c=col, v=values, lo=lo, hi=hi: f"{c} {v.iat[i]} outside {lo}..{hi}")
        events[name] = values.astype(float)
    if label_column:
        parsed = [_label(v) for v in raw[label_column]]
        flag(
            np.array([p is None for p in parsed], dtype=bool),
            lambda i: f"label {raw[label_column].iat[i]!r} not understood",
        )
        events["is_anomaly"] = [bool(p and p[0]) for p in parsed]
        events["anomaly_type"] = [p[1] if p else "none" for p in parsed]
    else:
        events["is_anomaly"] = False
        events["anomaly_type"] = "none"
    for name in ("building", "room", "model", "firmware_version"):
        events[name] = raw[mapping[name]].str.strip() if name in mapping else DEFAULTS[name]
    if "floor" in mapping:
        floor = pd.to_numeric(raw[mapping["floor"]].str.strip(), errors="coerce")
        flag(
            (floor.isna() | (floor % 1 != 0)).to_numpy(),
            lambda i: f"floor {raw[mapping['floor']].iat[i]!r} is not an integer",
        )
        events["floor"] = floor.fillna(0).astype(np.int64)
    else:
        events["floor"] = DEFAULTS["floor"]
    events["line"] = lines

    ok = np.array([not r for r in reasons], dtype=bool)
    unreadable = len(bad)  # rows with the wrong number of fields, not in `raw`
    bad.extend(BadRow(lines[i], "; ".join(reasons[i])) for i in np.flatnonzero(~ok))
    bad.sort(key=lambda b: b.line)
    good = events[ok].reset_index(drop=True)[[*COLUMNS, "line"]]
    if bad:
        log.warning("%d of %d rows of %s do not parse, first: %s", len(bad), n + unreadable, path, bad[0])
    return ReplayData(events=good, bad_rows=bad, rows=n + unreadable)


def paced(events: pd.DataFrame, speed: float, rebase: bool = False, max_batch: int = 5000) -> Iterator[pd.DataFrame]:
    """Yield the events in batches when they come due: `speed` 1 is real time, 10 ten times faster,
    0 or infinity as fast as possible. With `rebase`, timestamps are shifted so that the first event is now."""
    if events.empty:
        return
    if rebase:
        shift = pd.Timestamp.now(tz="UTC") - events["timestamp"].iloc[0]
        events = events.assign(timestamp=events["timestamp"] + shift)
    if not speed or math.isinf(speed):
        for start in range(0, len(events), max_batch):
            yield events.iloc[start : start + max_batch]
        return
    if speed < 0:
        raise UserError(f"the speed factor must be positive, got {speed}")
    ts = events["timestamp"].astype("int64").to_numpy() / 1e9
    due = np.maximum.accumulate(ts - ts[0]) / speed  # seconds after the start; never earlier than a previous row
    t0 = time.monotonic()
    i = 0
    while i < len(events):
        elapsed = time.monotonic() - t0
        j = int(np.searchsorted(due, elapsed, side="right"))
        j = min(max(j, i), i + max_batch)
        if j > i:
            yield events.iloc[i:j]
            i = j
        else:
            time.sleep(min(due[i] - elapsed, 0.5))
