"""Replay recorded sensor readings from CSV files into Kafka, in the generator's schema or in a profile's.

Either a column mapping says which CSV column holds which event field of the default schema (``temperature=Temp_C``,
`read_csv`), or a channel profile describes the files (`read_profile`: several files or folders, one sensor per file
unless the profile names a sensor-id column, every channel of the profile). A timestamp column gives event time; an
optional label column marks anomalies. Rows that do not parse are collected with their file and line numbers (never
dropped silently), and the rest are replayed at real speed, N times faster, or as fast as possible.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from sensorops import profiles
from sensorops.errors import UserError
from sensorops.events import COLUMNS, MAX_ABS_READING, event_schema, in_time_range
from sensorops.profiles import Channel, Profile

log = logging.getLogger(__name__)


def _battery_range() -> tuple[float, float]:
    spec = event_schema()["properties"]["device_info"]["properties"]["battery_level"]
    return spec["minimum"], spec["maximum"]


NUMERIC_FIELDS = {**{c.name: c.range for c in profiles.default().channels}, "battery_level": _battery_range()}
"""Numeric fields of the default schema and their valid ranges (from the shipped event schema)."""
TEXT_FIELDS = ("sensor_id", "building", "room", "model", "firmware_version")
MAPPABLE = (*TEXT_FIELDS, "floor", *NUMERIC_FIELDS)
DEFAULTS = {"building": "replay", "floor": 0, "room": "replay", "model": "unknown", "firmware_version": "unknown"}
NULL_TOKENS = profiles.NULL_TOKENS


@dataclass(frozen=True)
class BadRow:
    """A CSV row that was not replayed, and why. `line` is the 1-based line number in `file`."""

    line: int
    reason: str
    file: Path | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ReplayData:
    """Parsed events (the wire format's columns plus ``line``, and ``file`` from `read_profile`), the rows that did
    not parse, and how many rows."""

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


@dataclass
class _Parsed:
    """One file's rows with the right number of fields: their text (`raw`), the events read from them, and why each
    is bad (empty when it is good); plus the rows that could not be split into fields."""

    path: Path
    raw: pd.DataFrame
    events: pd.DataFrame
    reasons: list[list[str]]
    unreadable: list[BadRow]

    def flag(self, mask: np.ndarray, message: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask):
            self.reasons[i].append(message(i))

    def result(self, columns: list[str]) -> ReplayData:
        ok = np.array([not r for r in self.reasons], dtype=bool)
        lines = self.events["line"].to_numpy()
        bad = self.unreadable + [
            BadRow(int(lines[i]), "; ".join(self.reasons[i]), self.path) for i in np.flatnonzero(~ok)
        ]
        bad.sort(key=lambda b: b.line)
        rows = len(self.raw) + len(self.unreadable)
        if bad:
            log.warning("%d of %d rows of %s do not parse, first: %s", len(bad), rows, self.path, bad[0])
        return ReplayData(events=self.events[ok].reset_index(drop=True)[columns], bad_rows=bad, rows=rows)


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"{path} is a directory; give the CSV file in it")
    if not path.is_file():
        raise UserError(f"{path} is not a regular file; give a CSV file" if path.exists() else f"no such file: {path}")


def _parse(path: Path, profile: Profile, encoding: str, sensor_id: str, more: Iterable[str] = ()) -> _Parsed:
    """Read one file as `profile` says: timestamp, sensor id (its column, or `sensor_id`), every channel (a number in
    its range, or missing), the label; `more` are further columns the caller checks."""
    _check_file(path)
    if len(profile.delimiter) != 1:
        raise UserError(f"the delimiter must be one character, got {profile.delimiter!r}")
    rows = _lines(path, profile.delimiter, encoding)
    _, first, problem = next(rows, (0, None, "empty"))
    if first is None:
        raise UserError(f"{path} has no header line ({problem})")
    header = [h.strip() for h in first]
    label, id_column = profile.label_column, profile.sensor_id_column
    needed = {profile.timestamp_column, *(c.column for c in profile.channels), *more, *filter(None, (label, id_column))}
    missing = sorted(needed - set(header))
    if missing:
        raise UserError(f"{path} has no column(s) {missing}; its columns are {header}")
    lines: list[int] = []
    records: list[list[str]] = []
    unreadable: list[BadRow] = []
    for number, row, problem in rows:
        if row is None or len(row) != len(header):
            unreadable.append(BadRow(number, problem or f"{len(row)} fields, expected {len(header)}", path))
            continue
        records.append(row)
        lines.append(number)
    raw = pd.DataFrame(records, columns=header, dtype=str) if records else pd.DataFrame(columns=header, dtype=str)
    n = len(raw)
    parsed = _Parsed(path, raw, pd.DataFrame(index=range(n)), [[] for _ in range(n)], unreadable)
    events, flag = parsed.events, parsed.flag

    stamp = raw[profile.timestamp_column]
    ts = profiles.parse_timestamps(stamp, profile.timestamp_format, profile.timezone)
    flag(ts.isna().to_numpy(), lambda i: f"timestamp {stamp.iat[i]!r} is not a date")
    epoch_ms = ts.astype("int64", copy=False).to_numpy() // 1_000_000 if n else np.array([], dtype=np.int64)
    outside = ts.notna().to_numpy() & ~np.array([in_time_range(ms) for ms in epoch_ms], dtype=bool)
    flag(outside, lambda i: f"timestamp {stamp.iat[i]!r} is outside 2000 .. a day from now")

    events["sensor_id"] = raw[id_column].str.strip() if id_column else sensor_id
    if id_column:
        flag((events["sensor_id"] == "").to_numpy(), lambda i: "empty sensor_id")
    events["timestamp"] = ts
    for channel in profile.channels:
        col, (lo, hi) = channel.column, channel.range or (-MAX_ABS_READING, MAX_ABS_READING)
        text, values = profiles.blank_nulls(raw[col]), profiles.parse_numbers(raw[col])
        flag((values.isna() & (text != "")).to_numpy(), lambda i, c=col, t=text: f"{c} {t.iat[i]!r} is not a number")
        outside = ((values < lo) | (values > hi)).to_numpy()
        flag(outside, lambda i, c=col, v=values, lo=lo, hi=hi: f"{c} {v.iat[i]} outside {lo:g}..{hi:g}")
        events[channel.name] = values
    if label:
        parsed_labels = [profiles.parse_label(v, profile.label_encoding, profile.anomaly_types) for v in raw[label]]
        flag(
            np.array([p is None for p in parsed_labels], dtype=bool),
            lambda i: f"label {raw[label].iat[i]!r} not understood",
        )
        events["is_anomaly"] = [bool(p and p[0]) for p in parsed_labels]
        events["anomaly_type"] = [p[1] if p else "none" for p in parsed_labels]
    else:
        events["is_anomaly"] = False
        events["anomaly_type"] = "none"
    events["line"] = lines
    return parsed


def read_csv(
    path: str | Path,
    mapping: dict[str, str],
    timestamp_column: str,
    label_column: str | None = None,
    delimiter: str = ",",
    sensor_id: str = "replay-001",
    encoding: str = "utf-8-sig",
) -> ReplayData:
    """Read and check a CSV file of readings mapped onto the default schema; see :class:`ReplayData`."""
    path = Path(path)
    _check_file(path)
    if not any(f in mapping for f in profiles.default().channel_names):
        raise UserError("map at least one of temperature, humidity, pressure (e.g. --map temperature=Temp)")
    numeric = tuple(Channel(f, mapping[f], "", NUMERIC_FIELDS[f]) for f in NUMERIC_FIELDS if f in mapping)
    layout = replace(
        profiles.default(),
        channels=numeric,
        timestamp_column=timestamp_column,
        label_column=label_column,
        sensor_id_column=mapping.get("sensor_id"),
        delimiter=delimiter,
    )
    more = [mapping[f] for f in ("building", "room", "model", "firmware_version", "floor") if f in mapping]
    parsed = _parse(path, layout, encoding, sensor_id, more)
    events, raw = parsed.events, parsed.raw
    for name in NUMERIC_FIELDS:
        if name not in mapping:
            events[name] = np.nan
    for name in ("building", "room", "model", "firmware_version"):
        events[name] = raw[mapping[name]].str.strip() if name in mapping else DEFAULTS[name]
    if "floor" in mapping:
        floor = pd.to_numeric(raw[mapping["floor"]].str.strip(), errors="coerce")
        parsed.flag(
            (floor.isna() | (floor % 1 != 0)).to_numpy(),
            lambda i: f"floor {raw[mapping['floor']].iat[i]!r} is not an integer",
        )
        events["floor"] = floor.fillna(0).astype(np.int64)
    else:
        events["floor"] = DEFAULTS["floor"]
    return parsed.result([*COLUMNS, "line"])


def read_profile(paths: Iterable[str | Path], profile: Profile, encoding: str = "utf-8-sig") -> ReplayData:
    """Read and check CSV files (or folders of them) described by `profile`; see :class:`ReplayData`.

    One sensor per file (named by `profiles.sensor_ids`) unless the profile names a sensor-id column. The events of
    several files are merged in timestamp order (stably), with the `file` each came from.
    """
    files = profiles.csv_files(paths)
    ids = profiles.sensor_ids(files)
    own = ["sensor_id", "timestamp", *profile.channel_names, "is_anomaly", "anomaly_type"]
    columns = [*COLUMNS] if profile.is_default else own
    parts, bad, rows = [], [], 0
    for path in files:
        parsed = _parse(path, profile, encoding, ids[path])
        if profile.is_default:  # the default wire format's descriptive fields, as the mapping replay fills them
            parsed.events = parsed.events.assign(battery_level=np.nan, **DEFAULTS)
        parsed.events["file"] = str(path)
        data = parsed.result([*columns, "line", "file"])
        parts.append(data.events)
        bad += data.bad_rows
        rows += data.rows
    events = pd.concat(parts, ignore_index=True)
    if len(files) > 1:
        events = events.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return ReplayData(events=events, bad_rows=bad, rows=rows)


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
