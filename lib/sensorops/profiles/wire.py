"""A profile's events on the wire: the JSON Schema generated from the profile, serialisation, and what the stream
job takes for a valid event (`event_format`).

The default profile's events are exactly those of `events` (with location and device_info); its generated schema
is built from the shipped schema's own parts, and a test checks that both accept the same events. Any other
profile's event is flat, one number (or null) per channel:

    {"schema_version": 1, "sensor_id": "valve1-0", "timestamp": "2020-03-09T10:14:33.000Z",
     "accelerometer1_rms": 0.0271, ..., "is_anomaly": false, "anomaly_type": "none"}
"""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd

from sensorops import events
from sensorops.profiles.model import Channel, Profile

CONTEXT = ("location", "device_info")
"""The default wire format's descriptive objects, which other profiles do not carry."""


def _channel(channel: Channel) -> dict[str, Any]:
    lo, hi = channel.range or (-events.MAX_ABS_READING, events.MAX_ABS_READING)
    described = {"description": channel.unit} if channel.unit else {}
    return {**described, "type": ["number", "null"], "minimum": lo, "maximum": hi}


def json_schema(profile: Profile) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event of `profile`."""
    shipped = events.event_schema()
    parts = shipped["properties"]
    properties = {
        "schema_version": {"const": profile.schema_version},
        "sensor_id": parts["sensor_id"],
        "timestamp": parts["timestamp"],
        **{c.name: _channel(c) for c in profile.channels},
        "is_anomaly": parts["is_anomaly"],
        "anomaly_type": {**parts["anomaly_type"], "enum": ["none", *profile.anomaly_types, "other"]},
        **({k: parts[k] for k in CONTEXT} if profile.is_default else {}),
    }
    return {
        "$schema": shipped["$schema"],
        "$id": shipped["$id"] if profile.is_default else f"https://sensorops.example/schemas/{profile.name}.json",
        "title": shipped["title"] if profile.is_default else f"Sensor event ({profile.name})",
        "description": shipped["description"],
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
        "allOf": shipped["allOf"],
    }


def event_format(profile: Profile) -> events.EventFormat:
    """What the stream job takes for a valid event of `profile` (`events.read_events`): the default wire format for
    the default profile (unchanged), else flat events whose channels are each within their range, as replay checks
    them (`replay.read_profile`) and the schema states them."""
    if profile.is_default:
        return events.DEFAULT_FORMAT
    limit = events.MAX_ABS_READING
    ranges = [c.range or (-limit, limit) for c in profile.channels]
    bounds = tuple((c.name, max(lo, -limit), min(hi, limit)) for c, (lo, hi) in zip(profile.channels, ranges))
    return events.EventFormat(bounds, context=False)


def validate(dicts: list[dict[str, Any]], profile: Profile) -> list[str]:
    """Schema violations of events of `profile`, as ``"event N: message"`` lines (empty when all are valid)."""
    import jsonschema  # only needed here

    checker = jsonschema.Draft202012Validator(json_schema(profile))
    return [f"event {i}: {err.message}" for i, e in enumerate(dicts) for err in checker.iter_errors(e)]


def serialize(frame: pd.DataFrame, profile: Profile) -> tuple[list[bytes], list[bytes]]:
    """Kafka keys (sensor_id) and values (event JSON) for events of `profile`: columns sensor_id, timestamp,
    one per channel, is_anomaly, anomaly_type (and, for the default profile, all of `events.COLUMNS`)."""
    if profile.is_default:
        return events.serialize(frame)
    missing = [c for c in ("sensor_id", "timestamp", *profile.channel_names, "is_anomaly") if c not in frame.columns]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    names = b"".join(b'"%b":%%b,' % c.encode() for c in profile.channel_names)
    template = b'{"schema_version":%d,"sensor_id":%%b,"timestamp":"%%bZ",%b"is_anomaly":%%b,"anomaly_type":%%b}' % (
        profile.schema_version,
        names,
    )
    columns = [
        events.json_strings(frame["sensor_id"]),
        events.json_timestamps(frame["timestamp"]),
        *(events.json_numbers(frame[c]) for c in profile.channel_names),
        [b"true" if a else b"false" for a in frame["is_anomaly"].tolist()],
        events.json_strings(frame["anomaly_type"]),
    ]
    keys = [str(s).encode() for s in frame["sensor_id"]]
    return keys, [template % row for row in zip(*columns)]


def to_dicts(frame: pd.DataFrame, profile: Profile) -> list[dict[str, Any]]:
    """Events as they travel on the wire, decoded (to show or validate a sample)."""
    return [orjson.loads(v) for v in serialize(frame, profile)[1]]
