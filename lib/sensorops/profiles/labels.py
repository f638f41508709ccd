"""How a data set writes its labels: the encodings a profile can name, reading one label, and guessing the encoding.

An encoding decides which cell values mean a normal reading and which an anomaly; anything else is a bad row.

- `0/1`: exactly `0` or `1`.
- `0.0/1.0`: any number equal to 0 or 1 (`0`, `0.0`, `1.00`, `1e0`).
- `true/false`: true/false, t/f, yes/no, y/n, in any case.
- `names`: words (normal, ok, anomaly, ...; 0/1 and true/false too) and the profile's anomaly type names; an
  anomalous reading keeps its type name, or `other` when the word names no type.
"""

from __future__ import annotations

from collections.abc import Iterable

ENCODINGS = ("0/1", "0.0/1.0", "true/false", "names")

NORMAL_WORDS = frozenset({"", "0", "false", "no", "n", "f", "normal", "none", "ok"})
ANOMALY_WORDS = frozenset({"1", "true", "yes", "y", "t", "anomaly", "anomalous", "abnormal"})
_BOOLEAN = {"true": True, "t": True, "yes": True, "y": True, "false": False, "f": False, "no": False, "n": False}

Label = tuple[bool, str]
"""(is_anomaly, anomaly_type): `(False, "none")` for a normal reading."""

NORMAL: Label = (False, "none")
OTHER: Label = (True, "other")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_label(value: str, encoding: str = "names", types: Iterable[str] = ()) -> Label | None:
    """One label cell as (is_anomaly, anomaly_type), or None when `encoding` does not understand it."""
    v = value.strip().lower()
    if encoding == "0/1":
        return {"0": NORMAL, "1": OTHER}.get(v)
    if encoding == "0.0/1.0":
        number = _number(v)
        return NORMAL if number == 0 else OTHER if number == 1 else None
    if encoding == "true/false":
        flag = _BOOLEAN.get(v)
        return None if flag is None else (OTHER if flag else NORMAL)
    if encoding != "names":
        raise ValueError(f"unknown label encoding {encoding!r}; encodings are {', '.join(ENCODINGS)}")
    if v in NORMAL_WORDS:
        return NORMAL
    if v in types:
        return True, v
    return OTHER if v in ANOMALY_WORDS else None


def detect_encoding(values: Iterable[str]) -> tuple[str, tuple[str, ...]]:
    """The narrowest encoding that reads every value, and the anomaly type names it found (for `names`).

    Unknown words become type names: a label column holds nothing but labels.
    """
    distinct = {str(v).strip().lower() for v in values} - {""}
    if distinct <= {"0", "1"}:
        return "0/1", ()
    if all(parse_label(v, "0.0/1.0") for v in distinct):
        return "0.0/1.0", ()
    if distinct <= set(_BOOLEAN):
        return "true/false", ()
    types = tuple(sorted(distinct - NORMAL_WORDS - ANOMALY_WORDS))
    return "names", types
