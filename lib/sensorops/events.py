"""The event's wire format, in one place: its schema, how events are written to Kafka and how they are read back.

One event is a JSON object (schema version 1, `schemas/sensor_event.schema.json`), keyed by `sensor_id`:

    {"schema_version": 1, "sensor_id": "...", "timestamp": "2026-11-27T09:00:00.000Z", "temperature": 21.3,
     "humidity": 45.1, "pressure": 1013.2, "is_anomaly": false, "anomaly_type": "none",
     "location": {"building": ..., "floor": ..., "room": ...},
     "device_info": {"model": ..., "firmware_version": ..., "battery_level": ...}}

`serialize` writes a DataFrame of events (`COLUMNS`) without building a dict per event. `read_events` decodes and
checks a batch of raw values, parsing each once: the stream job calls it for every batch of records (its pandas UDF),
batch code through `split_payloads` and `read_event` (a batch of one), so stream and batch cannot disagree on what is
valid.

Validity (anything else is a dead letter, with one of `DEAD_LETTER_REASONS`): the payload is a JSON object;
`sensor_id` and `timestamp` are present and not null; `sensor_id` is a non-empty string; `timestamp` is a string
`YYYY-MM-DDTHH:MM:SS[.f]Z` naming a real instant after 1970-01-01T00:00:00Z; temperature, humidity and pressure
are each a JSON number, null, or absent. Optional descriptive fields (location, device_info, is_anomaly,
anomaly_type) of the wrong type become null, and so does a floor that does not fit a 32-bit integer.

A channel profile's events (`sensorops.profiles`) are read by the same rules, given as an `EventFormat`: its
channels instead of these three, each reading also within its channel's range (else `out_of_range`), and flat (no
location or device_info). `DEFAULT_FORMAT` is the one above, unchanged.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pandas as pd

SCHEMA_VERSION = 1
CHANNELS = ("temperature", "humidity", "pressure")
"""The measured channels."""

COLUMNS = (
    "sensor_id",
    "timestamp",
    "temperature",
    "humidity",
    "pressure",
    "is_anomaly",
    "anomaly_type",
    "building",
    "floor",
    "room",
    "model",
    "firmware_version",
    "battery_level",
)
"""The flat columns of an events DataFrame; :func:`serialize` nests location and device_info."""

DEAD_LETTER_REASONS = ("invalid_encoding", "too_large", "invalid_json", "missing_field", "wrong_type", "out_of_range")
MAX_VALUE_BYTES = 64 * 1024
"""A larger raw value is a dead letter (`too_large`): far above any real event (about 400 bytes) and far below Kafka's
1 MB request size, so that no sink ever fails on the size of what it writes."""
MAX_KEY_BYTES = 1024
"""A larger record key is a dead letter (`too_large`): the key is a sensor id (about 10 bytes)."""
DEAD_LETTER_PAYLOAD_CHARS = 2_000
"""How much of a rejected value its dead letter keeps (`dead_letter_text`)."""
EARLIEST_MS = 946_684_800_000
"""2000-01-01T00:00:00Z: an earlier event time is a dead letter (`out_of_range`)."""
MAX_AHEAD_MS = 24 * 3600 * 1000
"""An event time further ahead of the reader's clock is a dead letter (`out_of_range`): one event dated 9999 would
otherwise move the job's watermark so far that every later event is late."""
MAX_ABS_READING = 1e9
"""A reading beyond this magnitude is a dead letter (`out_of_range`): squares of larger doubles overflow the rolling
variance into infinities. (Non-finite literals, `NaN` or `1e400`, do not parse: `invalid_json`.)"""
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"

FLAT_NAMES = {"timestamp": "event_time", "model": "device_model"}
"""Columns whose name changes once an event is read: the instant it names, and which device it came from."""

EVENT_COLUMNS = [FLAT_NAMES.get(c, c) for c in COLUMNS]
"""A valid event, flat: what `read_event` returns (with `event_ms` for `event_time`) and the columns of
`events_frame`."""

_TS_RE = re.compile(TIMESTAMP_PATTERN)
_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
INT_RANGE = (-(2**31), 2**31 - 1)
"""A `floor` outside this range (a 32-bit INT in Flink) becomes null, like a floor of the wrong type."""

READ_FIELDS = ("sensor_id", "event_ms", *EVENT_COLUMNS[2:])
"""A valid event as `read_events` returns it: `EVENT_COLUMNS` with `event_ms` (epoch milliseconds) for `event_time`."""


@dataclass(frozen=True)
class EventFormat:
    """What `read_events` takes for a valid event: its channels, each a JSON number or null within its range, and
    whether it carries location and device_info (the default wire format) or is flat (a profile's, `profiles.wire`)."""

    bounds: tuple[tuple[str, float, float], ...] = tuple((c, -MAX_ABS_READING, MAX_ABS_READING) for c in CHANNELS)
    """(channel, low, high), inclusive, for each channel in order; no bound beyond +-`MAX_ABS_READING`."""
    context: bool = True
    """Location and device_info, read as the default wire format reads them (its channels only)."""

    def __post_init__(self) -> None:
        if self.context and self.channels != CHANNELS:
            raise ValueError(f"only the default channels {CHANNELS} come with location and device_info")
        if any(lo < -MAX_ABS_READING or hi > MAX_ABS_READING for _, lo, hi in self.bounds):
            raise ValueError(f"a channel's bounds are not within +-{MAX_ABS_READING:g}: {self.bounds}")

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, _, _ in self.bounds)

    @property
    def fields(self) -> tuple[str, ...]:
        """A valid event as `read_events` returns it: `READ_FIELDS`, or for a flat event its own channels."""
        return READ_FIELDS if self.context else ("sensor_id", "event_ms", *self.channels, "is_anomaly", "anomaly_type")


DEFAULT_FORMAT = EventFormat()
"""The default wire format: temperature, humidity and pressure (no range but `MAX_ABS_READING`), location and
device_info."""


def epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds of an ISO-8601 UTC timestamp string (truncated to milliseconds); None if it is not one."""
    if not isinstance(value, str) or not _TS_RE.fullmatch(value):  # fullmatch: `$` would let a final newline in
        return None
    try:  # the pattern fixed every digit's position; datetime() rejects days that do not exist
        base = datetime(
            int(value[:4]), int(value[5:7]), int(value[8:10]), int(value[11:13]), int(value[14:16]), int(value[17:19])
        )
    except ValueError:
        return None
    frac = value[20:-1]
    return (base - _EPOCH) // _ONE_MS + (int((frac + "000")[:3]) if frac else 0)


def parse_timestamp(value: Any) -> pd.Timestamp | None:
    """The instant an ISO-8601 UTC timestamp names, truncated to milliseconds; None if it is not one."""
    ms = epoch_ms(value)
    return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def in_time_range(ms: float) -> bool:
    """Whether an event time (epoch milliseconds) is one the pipeline takes: from 2000 to a day ahead of the clock."""
    return EARLIEST_MS <= ms <= time.time() * 1000 + MAX_AHEAD_MS


def read_events(
    payloads: Sequence[bytes | str | None],
    keys: Sequence[bytes | None] | None = None,
    max_bytes: int = MAX_VALUE_BYTES,
    max_key_bytes: int = MAX_KEY_BYTES,
    fmt: EventFormat = DEFAULT_FORMAT,
) -> tuple[list[str | None], list[tuple[Any, ...] | None]]:
    """Decode and check raw Kafka values (and the sizes of their keys), each parsed once: per record, its dead-letter
    reason (one of `DEAD_LETTER_REASONS`) or None, and its flat event (a tuple of `fmt.fields`) or None.

    The one definition of what is valid: the stream job calls it for each batch of records (its pandas UDF), batch
    code through `split_payloads` and `read_event`. No value makes it raise. A batch reads the clock once.
    """
    latest_ms = time.time() * 1000 + MAX_AHEAD_MS
    reasons: list[str | None] = []
    rows: list[tuple[Any, ...] | None] = []
    for payload, key in zip(payloads, keys if keys is not None else itertools.repeat(None)):
        reason, row = _read(payload, key, max_bytes, max_key_bytes, latest_ms, fmt)
        reasons.append(reason)
        rows.append(row)
    return reasons, rows


def _read(
    payload: bytes | str | None,
    key: bytes | None,
    max_bytes: int,
    max_key_bytes: int,
    latest_ms: float,
    fmt: EventFormat,
) -> tuple[str | None, tuple[Any, ...] | None]:
    """One record (`read_events`): the rules, in the order they decide a dead letter's reason."""
    if (payload is not None and len(payload) > max_bytes) or (key is not None and len(key) > max_key_bytes):
        return "too_large", None
    try:
        obj = orjson.loads(payload)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return ("invalid_encoding" if _not_utf8(payload) else "invalid_json"), None
    if not isinstance(obj, dict):
        return "invalid_json", None
    sensor_id, stamp = obj.get("sensor_id"), obj.get("timestamp")
    if sensor_id is None or stamp is None:
        return "missing_field", None
    if not isinstance(sensor_id, str) or not sensor_id or not isinstance(stamp, str):
        return "wrong_type", None
    ms = epoch_ms(stamp)
    if ms is None:
        return "wrong_type", None
    if not EARLIEST_MS <= ms <= latest_ms:
        return "out_of_range", None
    floats = []
    for channel, lo, hi in fmt.bounds:  # in order: the first channel that fails decides the reason
        value = obj.get(channel)
        if value is None:
            floats.append(None)
        elif not _is_number(value):
            return "wrong_type", None
        elif not lo <= value <= hi:
            return "out_of_range", None
        else:
            floats.append(float(value))
    if not fmt.context:
        anomaly, kind = obj.get("is_anomaly"), _text(obj.get("anomaly_type")) or "none"  # as `_flat_row` reads them
        return None, (sensor_id, ms, *floats, anomaly is True or anomaly == "true", kind)
    return None, _flat_row(obj, sensor_id, ms, tuple(floats))


def _text(value: Any) -> str | None:
    """A descriptive text field as the stream reads it: a string, a number or a boolean as text; else None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _flat_row(
    event: Mapping[str, Any], sensor_id: str, ms: int | None, readings: tuple[float | None, ...]
) -> tuple[Any, ...]:
    """A checked event, its readings already floats or None, as a tuple of `READ_FIELDS`: descriptive fields of the
    wrong type become None."""
    location, device = event.get("location"), event.get("device_info")
    location = location if isinstance(location, dict) else {}
    device = device if isinstance(device, dict) else {}
    anomaly, floor, battery = event.get("is_anomaly"), location.get("floor"), device.get("battery_level")
    in_range = isinstance(floor, int) and not isinstance(floor, bool) and INT_RANGE[0] <= floor <= INT_RANGE[1]
    return (
        sensor_id,
        ms,
        *readings,
        anomaly is True or anomaly == "true",
        _text(event.get("anomaly_type")) or "none",
        _text(location.get("building")),
        floor if in_range else None,
        _text(location.get("room")),
        _text(device.get("model")),
        _text(device.get("firmware_version")),
        float(battery) if _is_number(battery) else None,
    )


def read_event(
    payload: bytes | str | None,
    max_bytes: int = MAX_VALUE_BYTES,
    key: bytes | None = None,
    max_key_bytes: int = MAX_KEY_BYTES,
    fmt: EventFormat = DEFAULT_FORMAT,
) -> tuple[str | None, dict[str, Any] | None]:
    """One raw Kafka value (and its key), read by `read_events`: (dead-letter reason, None) or (None, flat event),
    the flat event a dict of `fmt.fields`."""
    reasons, rows = read_events([payload], [key], max_bytes, max_key_bytes, fmt)
    return reasons[0], None if rows[0] is None else dict(zip(fmt.fields, rows[0]))


def _not_utf8(payload: bytes | str | None) -> bool:
    if not isinstance(payload, bytes):
        return False
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def kept_bytes(max_bytes: int = MAX_VALUE_BYTES) -> int:
    """How much of a raw value decides what becomes of it: cut to this many bytes, a value gets the same reason
    (`read_events` with `max_bytes`) and the same dead letter (`dead_letter_text`) as whole. The stream job hands its
    UDF no more, so that a run of huge records cannot fill the memory of a batch."""
    return max(max_bytes + 1, _TEXT_BYTES)


_TEXT_BYTES = 4 * DEAD_LETTER_PAYLOAD_CHARS + 4
"""Bytes that hold the first `DEAD_LETTER_PAYLOAD_CHARS` characters of any value, and the 3 bytes a decoder may read
past the last of them."""


def dead_letter_text(payload: bytes | str | None, max_bytes: int = MAX_VALUE_BYTES) -> str:
    """What a dead letter keeps of a rejected value: its text (bytes that are not UTF-8 as `\\xNN` escapes), cut to
    `DEAD_LETTER_PAYLOAD_CHARS` with a note of its size (or, above `max_bytes`, of that limit), so that a dead letter is
    never too large to write. The same for the value cut to `kept_bytes(max_bytes)`."""
    if payload is None:
        return ""
    text = payload[:_TEXT_BYTES].decode("utf-8", "backslashreplace") if isinstance(payload, bytes) else payload
    if len(text) <= DEAD_LETTER_PAYLOAD_CHARS:
        return text
    size = f"more than {max_bytes:,} bytes" if len(payload) > max_bytes else f"{len(payload):,} bytes in all"
    return f"{text[:DEAD_LETTER_PAYLOAD_CHARS]}... [cut: {size}]"


def dead_letter_reason(payload: bytes | str | None) -> str | None:
    """Why a raw Kafka value is a dead letter (one of `DEAD_LETTER_REASONS`), or None if it is a valid event."""
    return read_event(payload)[0]


def flatten_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """One valid event (nested, as on the topic) as a flat row of `EVENT_COLUMNS`."""
    readings = tuple(float(r) if _is_number(r) else None for r in (event.get(c) for c in CHANNELS))
    row = dict(zip(READ_FIELDS, _flat_row(event, event["sensor_id"], epoch_ms(event["timestamp"]), readings)))
    row["event_time"] = pd.Timestamp(row.pop("event_ms"), unit="ms", tz="UTC")
    return row


def split_payloads(
    payloads: Iterable[bytes | str], keys: Iterable[bytes | None] | None = None, fmt: EventFormat = DEFAULT_FORMAT
) -> tuple[pd.DataFrame, list[tuple[bytes | str, str]]]:
    """Raw Kafka values (and their keys, if given), in arrival order, as (flat valid events, [(payload, reason)]
    dead letters)."""
    payloads = list(payloads)
    reasons, rows = read_events(payloads, None if keys is None else list(keys), fmt=fmt)
    frame = pd.DataFrame([row for row in rows if row is not None], columns=list(fmt.fields))
    frame.insert(1, "event_time", pd.to_datetime(frame.pop("event_ms").astype("int64"), unit="ms", utc=True))
    dead = [(payload, reason) for payload, reason in zip(payloads, reasons) if reason is not None]
    return _typed(frame, fmt), dead


def events_frame(events: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Events, nested (as produced) or already flat, as a DataFrame of `EVENT_COLUMNS` with proper dtypes."""
    if isinstance(events, pd.DataFrame):
        records = events.to_dict("records")
    else:
        records = list(events)
    rows = [r if "event_time" in r else flatten_event(r) for r in records]
    return _typed(pd.DataFrame(rows, columns=EVENT_COLUMNS))


def _typed(frame: pd.DataFrame, fmt: EventFormat = DEFAULT_FORMAT) -> pd.DataFrame:
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True).astype("datetime64[ms, UTC]")
    for col in (*fmt.channels, "battery_level") if fmt.context else fmt.channels:
        frame[col] = frame[col].astype("float64")
    if fmt.context:
        frame["floor"] = frame["floor"].astype("Int32")
    frame["is_anomaly"] = frame["is_anomaly"].astype(bool)
    return frame


# -- writing ---------------------------------------------------------------------------------------------------

_TEMPLATE = (
    b'{"schema_version":1,"sensor_id":%b,"timestamp":"%bZ","temperature":%b,"humidity":%b,"pressure":%b,'
    b'"is_anomaly":%b,"anomaly_type":%b,"location":{"building":%b,"floor":%b,"room":%b},'
    b'"device_info":{"model":%b,"firmware_version":%b,"battery_level":%b}}'
)


def json_numbers(values: Any) -> list[bytes]:
    """JSON literals of a numeric column (NaN becomes null), in one orjson call."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return []
    return orjson.dumps(arr, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",")


def json_strings(values: Any) -> list[bytes]:
    """JSON string literals of a column, encoding each distinct value once."""
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=False)
    encoded = [b"null" if pd.isna(u) else orjson.dumps(str(u)) for u in uniques]
    return [encoded[c] for c in codes.tolist()]


def json_timestamps(values: Any) -> list[bytes]:
    """UTC instants as `YYYY-MM-DDTHH:MM:SS.mmm` (the caller adds the `Z`)."""
    ts = pd.DatetimeIndex(values)
    if ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime_as_string(ts.to_numpy().astype("datetime64[ms]"), unit="ms").astype("S").tolist()


def serialize(events: pd.DataFrame) -> tuple[list[bytes], list[bytes]]:
    """Kafka keys (sensor_id, UTF-8) and values (event JSON, schema version 1) for an events DataFrame."""
    missing = [c for c in COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    keys = [s.encode() for s in events["sensor_id"].astype(str)] if len(events) else []
    floors = np.asarray(events["floor"], dtype=np.int64)
    floor_json = orjson.dumps(floors, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b",") if len(floors) else []
    columns = [
        json_strings(events["sensor_id"]),
        json_timestamps(events["timestamp"]),
        json_numbers(events["temperature"]),
        json_numbers(events["humidity"]),
        json_numbers(events["pressure"]),
        [b"true" if a else b"false" for a in events["is_anomaly"].tolist()],
        json_strings(events["anomaly_type"]),
        json_strings(events["building"]),
        floor_json,
        json_strings(events["room"]),
        json_strings(events["model"]),
        json_strings(events["firmware_version"]),
        json_numbers(events["battery_level"]),
    ]
    template = _TEMPLATE
    return keys, [template % row for row in zip(*columns)]


def to_dicts(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Events as nested dicts, exactly as they travel on the wire (useful to show or validate a sample)."""
    return [orjson.loads(v) for v in serialize(events)[1]]


@cache
def event_schema() -> dict[str, Any]:
    """The JSON Schema of one event (``schemas/sensor_event.schema.json`` in the package)."""
    text = resources.files("sensorops").joinpath("schemas/sensor_event.schema.json").read_text()
    return json.loads(text)


def validate(events: list[dict[str, Any]]) -> list[str]:
    """Schema violations of the given events, as ``"event N: message"`` lines (empty when all are valid)."""
    import jsonschema  # only needed here

    checker = jsonschema.Draft202012Validator(event_schema())  # the schema uses patterns, not `format`
    return [f"event {i}: {err.message}" for i, e in enumerate(events) for err in checker.iter_errors(e)]
