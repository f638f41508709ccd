"""Channel profiles: label encodings, the YAML round trip, one-line errors for bad files, and the default profile's
generated event schema against the shipped one."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorops import config, events, generator, profiles
from sensorops.errors import UserError

ANNOTATIONS = {"title", "description", "$id", "$comment"}


def _strip(schema: object) -> object:
    """A schema without its annotations, which never change what it accepts."""
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k not in ANNOTATIONS or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


@pytest.mark.parametrize(
    "encoding, value, expected",
    [
        ("0/1", "0", (False, "none")),
        ("0/1", " 1 ", (True, "other")),
        ("0/1", "1.0", None),
        ("0.0/1.0", "0.0", (False, "none")),
        ("0.0/1.0", "1.0", (True, "other")),
        ("0.0/1.0", "1", (True, "other")),
        ("0.0/1.0", "0.5", None),
        ("true/false", "TRUE", (True, "other")),
        ("true/false", "f", (False, "none")),
        ("true/false", "1", None),
        ("names", "normal", (False, "none")),
        ("names", "Spike", (True, "spike")),
        ("names", "anomaly", (True, "other")),
        ("names", "maybe", None),
    ],
)
def test_label_encodings(encoding: str, value: str, expected: tuple[bool, str] | None) -> None:
    assert profiles.parse_label(value, encoding, types=("spike",)) == expected


@pytest.mark.parametrize(
    "values, encoding, types",
    [
        (["0", "1", "0"], "0/1", ()),
        (["0.0", "1.0"], "0.0/1.0", ()),
        (["True", "false"], "true/false", ()),
        (["normal", "valve_closed", "spike", "ok"], "names", ("spike", "valve_closed")),
    ],
)
def test_label_encoding_is_detected(values: list[str], encoding: str, types: tuple[str, ...]) -> None:
    assert profiles.detect_encoding(values) == (encoding, types)


def test_default_profile_comes_from_the_event_definitions() -> None:
    default = profiles.default()
    assert default.channel_names == events.CHANNELS
    assert default.is_default and default.schema_version == events.SCHEMA_VERSION
    shipped = events.event_schema()["properties"]
    ranges = [(shipped[c]["minimum"], shipped[c]["maximum"]) for c in events.CHANNELS]
    assert [c.range for c in default.channels] == ranges
    assert profiles.sensor_topic(default) == config.SENSOR_TOPIC


def test_default_schema_is_the_shipped_schema() -> None:
    assert _strip(profiles.json_schema(profiles.default())) == _strip(events.event_schema())


def test_default_schema_accepts_and_rejects_what_the_shipped_one_does() -> None:
    import jsonschema

    good = events.to_dicts(generator.simulate(n_sensors=3, duration_s=60, interval_s=5, anomaly_rate=0.3, seed=1))
    bad = []
    for field, value in [("temperature", 500.0), ("humidity", "wet"), ("schema_version", 2), ("anomaly_type", "x")]:
        event = copy.deepcopy(good[0])
        event[field] = value
        bad.append(event)
    bad.append({k: v for k, v in good[1].items() if k != "location"})
    bad.append({**good[2], "extra": 1})
    shipped = jsonschema.Draft202012Validator(events.event_schema())
    generated = jsonschema.Draft202012Validator(profiles.json_schema(profiles.default()))
    verdicts = [(shipped.is_valid(e), generated.is_valid(e)) for e in good + bad]
    assert verdicts == [(True, True)] * len(good) + [(False, False)] * len(bad)


def test_default_profile_keeps_the_wire_format() -> None:
    readings = generator.simulate(n_sensors=2, duration_s=20, interval_s=5, seed=3)
    assert profiles.serialize(readings, profiles.default()) == events.serialize(readings)


def custom() -> profiles.Profile:
    return profiles.Profile(
        name="pump-rig",
        channels=(
            profiles.Channel("flow", "Flow (l/min)", "l/min", (0.0, 50.0)),
            profiles.Channel("vibration", "Vib", "", None),
        ),
        timestamp_column="ts",
        timestamp_format="%Y-%m-%d %H:%M:%S",
        label_column="state",
        label_encoding="names",
        anomaly_types=("cavitation",),
        sensor_id_column="pump",
        delimiter=";",
        schema_version=2,
    )


@pytest.mark.parametrize("profile", [profiles.default(), custom()], ids=["default", "custom"])
def test_yaml_round_trip(tmp_path: Path, profile: profiles.Profile) -> None:
    path = profiles.save(profile, tmp_path / "p.yaml")
    assert profiles.load(path) == profile
    assert profiles.load(profiles.save(profiles.load(path), tmp_path / "again.yaml")) == profile


def test_custom_events_are_flat_and_valid_against_their_schema() -> None:
    profile = custom()
    frame = pd.DataFrame(
        {
            "sensor_id": ["p1", "p2"],
            "timestamp": pd.to_datetime(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"]),
            "flow": [12.5, np.nan],
            "vibration": [0.1, 3.0],
            "is_anomaly": [False, True],
            "anomaly_type": ["none", "cavitation"],
        }
    )
    dicts = profiles.to_dicts(frame, profile)
    assert dicts[1] == {
        "schema_version": 2,
        "sensor_id": "p2",
        "timestamp": "2026-01-01T00:00:01.000Z",
        "flow": None,
        "vibration": 3.0,
        "is_anomaly": True,
        "anomaly_type": "cavitation",
    }
    assert profiles.validate(dicts, profile) == []
    assert profiles.validate([{**dicts[0], "flow": 99.0}], profile)  # outside the channel's range
    assert profiles.sensor_topic(profile) == f"{config.SENSOR_TOPIC}.pump-rig"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: [unclosed", "not valid YAML at line 1"),
        ("- a list", "a profile is a mapping"),
        ("name: Bad Name\nchannels: [{name: x}]", "name must be a slug"),
        ("name: ok\nchannels: []", "channels must be a non-empty list"),
        ("name: ok\nchannels: [{name: x, range: [5, 1]}]", "low < high"),
        ("name: ok\nchannels: [{name: sensor_id}]", "not an event field"),
        ("name: ok\nchannels: [{name: x, colour: red}]", "unknown keys"),
        ("name: ok\nchannels: [{name: x}, {name: x}]", "repeat"),
        ("name: ok\nchannels: [{name: x}]\nlabel: {column: y, encoding: yes/no}", "label encoding must be one of"),
        ("name: ok\nchannels: [{name: x}]\ndelimiter: ';;'", "one character"),
        ("name: building-climate\nchannels: [{name: x}]", "is the default's"),
    ],
)
def test_bad_profile_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        profiles.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_profile_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sensorops profile infer"):
        profiles.load(tmp_path / "nope.yaml")


def test_where_a_profiles_data_lives_is_named_in_one_place() -> None:
    default, profile = profiles.default(), custom()
    assert [profiles.topic(t, default) for t in (config.FEATURES_TOPIC, config.DEAD_LETTER_TOPIC)] == [
        config.FEATURES_TOPIC,
        config.DEAD_LETTER_TOPIC,
    ]
    assert profiles.topic(config.FEATURES_TOPIC, profile) == f"{config.FEATURES_TOPIC}.pump-rig"
    assert (profiles.archive_prefix(default), profiles.features_prefix(default)) == ("", "features")
    assert (profiles.archive_prefix(profile), profiles.features_prefix(profile)) == (
        "profiles/pump-rig",
        "profiles/pump-rig/features",
    )
    assert (profiles.per_profile("model", default), profiles.per_profile("model", profile)) == (
        "model",
        "model-pump-rig",
    )
