"""The CSV files of a data set: folders expanded, a sensor id per file, and the field separator sniffed."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from sensorops.errors import UserError

DELIMITERS = ",;\t|"
"""Separators `sniff_delimiter` chooses from."""
SNIFF_CHARS = 64 * 1024


def csv_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and the `*.csv` files under the folders named (sorted, recursively), each once."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".csv")
            if not inside:
                raise UserError(f"{path} holds no .csv file")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(
                f"{path} is not a regular file; give a CSV file" if path.exists() else f"no such file: {path}"
            )
    if not found:
        raise UserError("give at least one CSV file or folder")
    return list(dict.fromkeys(found))


def sensor_ids(files: list[Path]) -> dict[Path, str]:
    """A sensor id per file, for one sensor per file: the file's name without suffix, prefixed by its folder's name,
    and by as many further folders as it takes to tell the files apart (`a/valve1/0.csv` becomes `valve1-0`)."""
    for depth in range(2, max((len(f.parts) for f in files), default=1) + 2):
        ids = {f: "-".join([*f.parent.parts[len(f.parent.parts) - depth + 1 :], f.stem]) for f in files}
        if len(set(ids.values())) == len(files):
            return ids
    raise UserError("two of the files have the same path; give each file once")


def sniff_delimiter(path: Path, encoding: str = "utf-8-sig") -> str:
    """The field separator of a CSV file (one of `DELIMITERS`), from its first lines."""
    try:
        with path.open(newline="", encoding=encoding) as fh:
            sample = fh.read(SNIFF_CHARS)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}; check the path and give its --encoding") from None
    lines = sample.splitlines()[:50]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in DELIMITERS} if lines else {}
        best = max(counts, key=counts.get, default=",")
        if not counts or counts[best] == 0:
            raise UserError(f"cannot tell the field separator of {path}; give it with --delimiter") from None
        return best
