"""Reading the cells of a CSV column the way a profile says: readings (with the usual spellings of a missing
value) and timestamps (a strftime format, or ISO-8601 / epoch seconds or milliseconds)."""

from __future__ import annotations

import pandas as pd

NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-"})
"""Cell values read as a missing reading (a dropout), case-insensitively."""

TIMESTAMP_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%d.%m.%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
)
"""Formats `guess_timestamp_format` tries, in order (day-first before month-first, as most of the world writes)."""


def blank_nulls(text: pd.Series) -> pd.Series:
    """Stripped cells, with the spellings of a missing value (`NULL_TOKENS`) as ''."""
    text = text.str.strip()
    return text.where(~text.str.lower().isin(NULL_TOKENS), "")


def parse_numbers(text: pd.Series) -> pd.Series:
    """Numbers of stripped cells; NaN for a missing value and for text that is no number (tell them apart with
    `blank_nulls(text) != ''`)."""
    return pd.to_numeric(blank_nulls(text), errors="coerce").astype("float64")


def parse_timestamps(raw: pd.Series, fmt: str | None = None, timezone: str = "UTC") -> pd.Series:
    """UTC instants of the cells; NaT where a cell is not one.

    With `fmt`, cells are read with that strftime format; without, as ISO-8601 strings or, when every cell is a
    number, as epoch seconds or milliseconds. Naive times are in `timezone`.
    """
    raw = raw.str.strip()
    if fmt:
        ts = pd.to_datetime(raw, format=fmt, errors="coerce")
    else:
        numeric = pd.to_numeric(raw, errors="coerce")
        if numeric.notna().all() and len(raw):
            plausible = numeric.where(numeric.abs() < 1e14)  # epoch milliseconds reach 1e14 in the year 5138
            unit = "ms" if plausible.abs().median() > 1e11 else "s"
            return pd.to_datetime(plausible, unit=unit, utc=True, errors="coerce")
        ts = pd.to_datetime(raw, errors="coerce", format="mixed", utc=timezone == "UTC")
        if not pd.api.types.is_datetime64_any_dtype(ts):  # naive and zoned cells mixed: the zoned ones decide
            ts = pd.to_datetime(raw, errors="coerce", format="mixed", utc=True)
    if ts.dt.tz is None:
        ts = ts.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    return ts.dt.tz_convert("UTC")


def guess_timestamp_format(raw: pd.Series) -> str | None:
    """The first of `TIMESTAMP_FORMATS` that reads every cell, or None (then `parse_timestamps` reads them as
    ISO-8601 or epoch numbers)."""
    cells = raw.str.strip()
    cells = cells[cells != ""]
    for fmt in TIMESTAMP_FORMATS:
        if len(cells) and pd.to_datetime(cells, format=fmt, errors="coerce").notna().all():
            return fmt
    return None
