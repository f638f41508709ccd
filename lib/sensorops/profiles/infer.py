"""Propose a profile from CSV files: numeric columns become channels, their ranges come from the data with a margin,
the label encoding and the timestamp format are detected, and every decision is noted for the user to check."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sensorops.errors import UserError
from sensorops.profiles.cells import blank_nulls, guess_timestamp_format, parse_numbers, parse_timestamps
from sensorops.profiles.files import csv_files, sniff_delimiter
from sensorops.profiles.labels import detect_encoding
from sensorops.profiles.model import CHANNEL_PATTERN, NAME_PATTERN, RESERVED, Channel, Profile

RANGE_MARGIN = 0.5
"""Each side of a channel's range lies this share of the observed span beyond the observed extreme: room for
readings a little outside what the sample saw, while a reading far outside is still a bad row."""
MIN_NUMERIC_SHARE = 0.95
"""A column is numeric when at least this share of its non-missing cells are numbers (the rest will be bad rows)."""
MIN_DISTINCT = 3
"""A column with fewer distinct values (constant, or 0/1 like a second label column) does not become a channel."""


@dataclass
class Inference:
    """The proposed profile and what was decided, one line each."""

    profile: Profile
    notes: list[str] = field(default_factory=list)
    rows: int = 0
    files: int = 0


def slug(text: str, pattern: re.Pattern[str] = CHANNEL_PATTERN) -> str:
    """`Volume Flow RateRMS` -> `volume_flow_rate_rms`: a name that `pattern` accepts."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    name = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "channel"
    name = name if name[0].isalpha() else f"c_{name}"
    return name[:63] if pattern.match(name[:63]) else "channel"


def _unit(column: str) -> tuple[str, str]:
    """(name, unit) of a header such as `Temperature (°C)` or `flow [l/min]`; no unit otherwise."""
    match = re.match(r"^(.*?)\s*[\(\[]([^\)\]]+)[\)\]]\s*$", column)
    return (match.group(1), match.group(2).strip()) if match else (column, "")


def _nice(value: float, step: float, up: bool) -> float:
    rounded = (math.ceil if up else math.floor)(value / step) * step
    return float(f"{rounded:.12g}")


def channel_range(values: pd.Series, margin: float = RANGE_MARGIN) -> tuple[float, float]:
    """The observed range widened by `margin` of its span on each side (1 unit, or half the value, when constant),
    rounded outwards to three significant digits of the span."""
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * margin or max(abs(lo) * margin, 1.0)
    lo, hi = lo - pad, hi + pad
    step = 10.0 ** (math.floor(math.log10(hi - lo)) - 2)
    return _nice(lo, step, up=False), _nice(hi, step, up=True)


def read_tables(files: list[Path], delimiter: str, encoding: str) -> pd.DataFrame:
    """The files' cells as text, one frame (the columns of the first file; every file must have them)."""
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, encoding=encoding)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise UserError(f"cannot read {path} as CSV with {delimiter!r}: {str(exc).splitlines()[0]}") from None
        frame.columns = [c.strip() for c in frame.columns]
        if frames and set(frames[0].columns) - set(frame.columns):
            missing = sorted(set(frames[0].columns) - set(frame.columns))
            raise UserError(f"{path} lacks the columns {missing} of {files[0]}; infer a profile per layout")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def infer(
    paths: Iterable[str | Path],
    timestamp_column: str,
    *,
    label_column: str | None = None,
    sensor_id_column: str | None = None,
    delimiter: str | None = None,
    name: str | None = None,
    encoding: str = "utf-8-sig",
) -> Inference:
    """Propose a profile for the CSV files (or folders of them) in `paths`; see :class:`Inference`."""
    files = csv_files(paths)
    sniffed = delimiter is None
    delimiter = sniff_delimiter(files[0], encoding) if delimiter is None else delimiter
    if len(delimiter) != 1:
        raise UserError(f"the delimiter must be one character, got {delimiter!r}")
    table = read_tables(files, delimiter, encoding)
    notes = [
        f"{len(table):,} rows in {len(files)} file(s); separator {delimiter!r} ({'sniffed' if sniffed else 'given'})"
    ]
    named = [c for c in (timestamp_column, label_column, sensor_id_column) if c]
    missing = [c for c in named if c not in table.columns]
    if missing:
        raise UserError(f"no column(s) {missing}; the columns are {list(table.columns)}")

    fmt = guess_timestamp_format(table[timestamp_column])
    times = parse_timestamps(table[timestamp_column], fmt)
    if times.isna().all():
        example = table[timestamp_column].iloc[0] if len(table) else ""
        raise UserError(f"column {timestamp_column!r} holds no time that can be read (e.g. {example!r})")
    notes.append(f"timestamp: {timestamp_column!r}, format {fmt or 'ISO-8601 or epoch'}, naive times taken as UTC")
    if times.isna().any():
        notes.append(f"  {int(times.isna().sum())} cells of {timestamp_column!r} are not times: bad rows on replay")

    encoding_name, types = "names", ()
    if label_column:
        encoding_name, types = detect_encoding(table[label_column])
        counts = table[label_column].str.strip().value_counts().head(6).to_dict()
        notes.append(f"label: {label_column!r}, encoding {encoding_name}" + (f", types {list(types)}" if types else ""))
        notes.append(f"  values seen: {counts}")
    else:
        notes.append("label: none (every reading counts as normal)")
    notes.append(f"sensor id: {repr(sensor_id_column) if sensor_id_column else 'one sensor per file'}")

    channels, taken = [], set()
    for column in (c for c in table.columns if c not in named):
        values = parse_numbers(table[column])
        present = int((blank_nulls(table[column]) != "").sum())
        if not present or values.notna().sum() < MIN_NUMERIC_SHARE * present:
            notes.append(f"skipped {column!r}: not numeric")
            continue
        if values.nunique() < MIN_DISTINCT:
            notes.append(f"skipped {column!r}: only {values.nunique()} distinct value(s) (a flag or a second label?)")
            continue
        base, unit = _unit(column)
        cname = slug(base)
        while cname in taken or cname in RESERVED:
            cname = f"{cname}_{len(taken)}"
        taken.add(cname)
        channels.append(Channel(cname, column, unit, channel_range(values.dropna())))
        lo, hi = channels[-1].range or (0, 0)
        notes.append(
            f"channel {cname}: column {column!r}, data {values.min():.6g} .. {values.max():.6g}, range {lo:g} .. {hi:g}"
        )
    if not channels:
        raise UserError(f"no numeric column besides {named} in {files[0]}; is {delimiter!r} the separator?")
    if not any(c.unit for c in channels):
        notes.append("units: unknown; write them into the profile")

    name = name or slug(files[0].parent.name if len(files) > 1 else files[0].stem, NAME_PATTERN)
    if not NAME_PATTERN.match(name):
        raise UserError(f"the name must be a slug (lower case, digits, - or _), got {name!r}")
    profile = Profile(
        name=name,
        channels=tuple(channels),
        timestamp_column=timestamp_column,
        timestamp_format=fmt,
        label_column=label_column,
        label_encoding=encoding_name,
        anomaly_types=types,
        sensor_id_column=sensor_id_column,
        delimiter=delimiter,
    )
    return Inference(profile=profile, notes=notes, rows=len(table), files=len(files))
