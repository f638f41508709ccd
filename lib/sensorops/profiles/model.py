"""A channel profile: what a data set measures and how its CSV files are written, as data (YAML), not code.

    name: skab                      # a slug: it names the profile's topic and archive prefix
    schema_version: 1               # of the profile's event schema (`wire.json_schema`)
    delimiter: ";"
    timestamp: {column: datetime, format: "%Y-%m-%d %H:%M:%S", timezone: UTC}   # format null: ISO-8601 or epoch
    label: {column: anomaly, encoding: "0.0/1.0", types: []}                    # label null: unlabelled
    sensor_id: {column: null}       # null: one sensor per file, named after the file
    channels:
      - {name: pressure, column: Pressure, unit: bar, range: [-0.5, 1.5]}       # range null: any finite number
    features: {window: 10, long_window: 60, lags: [10, 60], detrend: [temperature]}  # optional: `features`

The default profile is the generator's building-climate data: its channels are `events.CHANNELS`, their units
and ranges those of the shipped event schema, so nothing is written twice and its events stay as they are.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sensorops import events
from sensorops.errors import UserError
from sensorops.profiles.labels import ENCODINGS

DEFAULT_NAME = "building-climate"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
"""Profile and channel names: safe in topic names, S3 prefixes and SQL identifiers (channels: no hyphen)."""
CHANNEL_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED = (frozenset(events.EVENT_COLUMNS) - set(events.CHANNELS)) | {
    *("schema_version", "timestamp", "event_ms", "line", "file", "location", "device_info", "model"),
    *("reason", "dead_letter", "payload", "proc_time", "prev_event_ms", "is_late", "dt", "hour"),
    *("kafka_partition", "kafka_offset", "kafka_timestamp"),
}
"""Names a channel cannot take: the event's other fields (flat and nested), replay's bookkeeping columns, and the
stream job's own columns beside the channels (`stream.job.JOB_COLUMNS`, with the archive's partitions)."""


@dataclass(frozen=True)
class Channel:
    """One measured quantity: its name on the wire, its CSV column, its unit and the range a valid reading is in."""

    name: str
    column: str = ""
    unit: str = ""
    range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.name)


@dataclass(frozen=True)
class Profile:
    """A data set's channels and CSV layout; see the module docstring for the YAML form."""

    name: str
    channels: tuple[Channel, ...]
    timestamp_column: str = "timestamp"
    timestamp_format: str | None = None
    timezone: str = "UTC"
    label_column: str | None = None
    label_encoding: str = "names"
    anomaly_types: tuple[str, ...] = ()
    sensor_id_column: str | None = None
    delimiter: str = ","
    schema_version: int = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """Unknown top-level keys of the file, kept so that saving does not drop them."""

    @property
    def is_default(self) -> bool:
        """Whether this is the building-climate profile, whose events keep the original wire format."""
        return self.name == DEFAULT_NAME

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (plain types only)."""
        channels = [
            {k: list(v) if k == "range" and v is not None else v for k, v in asdict(c).items()} for c in self.channels
        ]
        label = None
        if self.label_column:
            label = {"column": self.label_column, "encoding": self.label_encoding, "types": list(self.anomaly_types)}
        return {
            "name": self.name,
            "schema_version": self.schema_version,
            "delimiter": self.delimiter,
            "timestamp": {"column": self.timestamp_column, "format": self.timestamp_format, "timezone": self.timezone},
            "label": label,
            "sensor_id": {"column": self.sensor_id_column},
            "channels": channels,
            **self.extra,
        }


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise UserError(f"{where}: {message}")


def _range(value: Any, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    _check(ok and value[0] < value[1], where, f"range must be [low, high] with low < high, got {value!r}")
    return float(value[0]), float(value[1])


def _section(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key) or {}
    _check(isinstance(value, dict), where, f"{key} must be a mapping, got {type(value).__name__}")
    return value


def from_dict(data: Any, where: str = "the profile") -> Profile:
    """A profile from its YAML form, checked; every problem is a one-line `UserError` naming `where`."""
    _check(isinstance(data, dict), where, "a profile is a mapping (name, channels, timestamp, ...)")
    name = data.get("name")
    _check(isinstance(name, str) and bool(NAME_PATTERN.match(name)), where, f"name must be a slug, got {name!r}")
    raw_channels = data.get("channels")
    _check(isinstance(raw_channels, list) and bool(raw_channels), where, "channels must be a non-empty list")
    channels = []
    for i, item in enumerate(raw_channels):
        at = f"{where}: channel {i + 1}"
        _check(isinstance(item, dict), at, "a channel is a mapping (name, column, unit, range)")
        unknown = set(item) - {"name", "column", "unit", "range"}
        _check(not unknown, at, f"unknown keys {sorted(unknown)}")
        cname = item.get("name")
        ok = isinstance(cname, str) and bool(CHANNEL_PATTERN.match(cname)) and cname not in RESERVED
        ok = ok and "__" not in cname  # the features' SQL names its intermediate columns `<channel>__...`
        _check(ok, at, f"name must be lower_snake_case (no double underscore) and not an event field, got {cname!r}")
        unit = item.get("unit") or ""
        column = item.get("column") or cname
        _check(isinstance(column, str) and isinstance(unit, str), at, "column and unit must be text")
        channels.append(Channel(cname, str(column), str(unit), _range(item.get("range"), at)))
    names = [c.name for c in channels]
    _check(len(set(names)) == len(names), where, f"channel names repeat: {names}")
    ts, label, sensor = (_section(data, k, where) for k in ("timestamp", "label", "sensor_id"))
    encoding = label.get("encoding", "names")
    _check(encoding in ENCODINGS, where, f"label encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    delimiter = data.get("delimiter", ",")
    _check(isinstance(delimiter, str) and len(delimiter) == 1, where, f"delimiter must be one character: {delimiter!r}")
    version = data.get("schema_version", 1)
    _check(isinstance(version, int) and version >= 1, where, f"schema_version must be a positive integer: {version!r}")
    known = {"name", "schema_version", "delimiter", "timestamp", "label", "sensor_id", "channels"}
    profile = Profile(
        name=name,
        channels=tuple(channels),
        timestamp_column=str(ts.get("column") or "timestamp"),
        timestamp_format=ts.get("format"),
        timezone=str(ts.get("timezone") or "UTC"),
        label_column=label.get("column"),
        label_encoding=encoding,
        anomaly_types=tuple(str(t).strip().lower() for t in label.get("types") or ()),
        sensor_id_column=sensor.get("column"),
        delimiter=delimiter,
        schema_version=version,
        extra={k: v for k, v in data.items() if k not in known},
    )
    if profile.is_default:
        _check(profile.channel_names == default().channel_names, where, f"the name {DEFAULT_NAME} is the default's")
    return profile


def load(path: str | Path) -> Profile:
    """Read a profile file (YAML)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"no such profile: {path}; write one with `sensorops profile infer`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the profile {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    return from_dict(data, where=str(path))


def save(profile: Profile, path: str | Path) -> Path:
    """Write a profile file (YAML, keys in a fixed order)."""
    path = Path(path)
    text = yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the profile {path}: {exc.strerror or exc}") from None
    return path


@cache
def default() -> Profile:
    """The generator's building-climate profile, read off `events.CHANNELS` and the shipped event schema."""
    schema = events.event_schema()["properties"]
    channels = tuple(
        Channel(c, c, schema[c]["description"], (float(schema[c]["minimum"]), float(schema[c]["maximum"])))
        for c in events.CHANNELS
    )
    types = tuple(t for t in schema["anomaly_type"]["enum"] if t not in ("none", "other"))
    return Profile(
        name=DEFAULT_NAME,
        channels=channels,
        timestamp_column="timestamp",
        label_column="anomaly_type",
        label_encoding="names",
        anomaly_types=types,
        sensor_id_column="sensor_id",
        schema_version=events.SCHEMA_VERSION,
    )
