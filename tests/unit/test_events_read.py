"""`events.read_events`, the one definition of a dead letter, on hostile input: a batch reads every record as
`read_event` reads it alone, and the stream job's UDF (`stream.parse_events`) returns the same, row by row."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from sensorops import events, generator, profiles, stream

TS = "2026-11-27T09:00:00.000Z"


def _event(**fields) -> bytes:
    return json.dumps({"sensor_id": "s", "timestamp": TS, **fields}).encode()


HOSTILE = [
    (b"\xff\xfe{", "invalid_encoding"),
    (b'{"sensor_id": "\xc3\x28", "timestamp": "2026-11-27T09:00:00Z"}', "invalid_encoding"),
    (b"x" * (events.MAX_VALUE_BYTES + 1), "too_large"),
    (None, "invalid_json"),
    (b"", "invalid_json"),
    (b"not json", "invalid_json"),
    (b"null", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b'"a string"', "invalid_json"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": NaN}', "invalid_json"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": Infinity}', "invalid_json"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "temperature": -1e400}', "invalid_json"),
    (b'{"sensor_id": "\\ud800", "timestamp": "2026-11-27T09:00:00Z"}', "invalid_json"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z"', "invalid_json"),
    (b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json"),
    (json.dumps({"timestamp": TS}).encode(), "missing_field"),
    (json.dumps({"sensor_id": "s"}).encode(), "missing_field"),
    (json.dumps({"sensor_id": None, "timestamp": TS}).encode(), "missing_field"),
    (json.dumps({"sensor_id": "", "timestamp": TS}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": ["s"], "timestamp": TS}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": {"id": "s"}, "timestamp": TS}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": 1795770000000}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": ["2026-11-27T09:00:00Z"]}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27 09:00:00Z"}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "2026-02-30T09:00:00Z"}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T24:00:00Z"}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z\n"}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "2026-11-27T09:00:00.5Z\n"}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "\uff12026-11-27T09:00:00Z"}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "1999-12-31T23:59:59.999Z"}).encode(), "out_of_range"),
    (json.dumps({"sensor_id": "s", "timestamp": "9999-12-31T23:59:59.999999999Z"}).encode(), "out_of_range"),
    (_event(temperature="hot"), "wrong_type"),
    (_event(humidity=True), "wrong_type"),
    (_event(pressure=[1013.0]), "wrong_type"),
    (_event(pressure={"value": 1013.0}), "wrong_type"),
    (_event(temperature=1e9 + 1), "out_of_range"),
    (_event(pressure=-1.797e308), "out_of_range"),
    (_event(temperature=18446744073709551615), "out_of_range"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "humidity": 1' + b"0" * 30 + b"}", "out_of_range"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "humidity": 1' + b"0" * 400 + b"}", "invalid_json"),
    (_event(temperature=2e9, humidity="wet"), "out_of_range"),  # the first channel decides
    (_event(temperature="hot", humidity=2e9), "wrong_type"),
    (_event(temperature=None, humidity=1e9, pressure=-1e9), None),
    (_event(location="B1", device_info=[1, 2]), None),
    (_event(location={"floor": 2**31}, device_info={"battery_level": "full"}), None),
    (_event(location={"floor": -(2**31), "building": 7, "room": True}), None),
    (_event(location={"floor": 2.0, "building": None, "room": {"x": 1}}, anomaly_type=""), None),
    (_event(is_anomaly="true", anomaly_type=1.5, device_info={"model": False, "firmware_version": 1}), None),
    (_event(is_anomaly=1, extra={"nested": [{"garbage": [None, {}]}]}), None),
]
"""Values that are not events, and events with fields that are not what they should be, with their reason (None:
a valid event, whose wrong descriptive fields become null)."""


def valid_payloads(n: int) -> list[bytes]:
    return events.serialize(generator.simulate(n_sensors=5, duration_s=n / 10, seed=5))[1][:n]


@pytest.mark.parametrize(("payload", "reason"), HOSTILE)
def test_each_hostile_value_has_its_reason(payload, reason):
    assert events.read_event(payload)[0] == reason


def test_a_batch_reads_every_record_as_read_event_reads_it_alone():
    payloads = [p for p, _ in HOSTILE] + valid_payloads(40) + [p for p, _ in HOSTILE]  # repeated timestamps too
    reasons, rows = events.read_events(payloads)
    assert len(reasons) == len(rows) == len(payloads)
    for payload, reason, row in zip(payloads, reasons, rows, strict=True):
        alone = events.read_event(payload)
        assert (reason, None if row is None else dict(zip(events.READ_FIELDS, row))) == alone


def test_wrong_descriptive_fields_become_null():
    _, event = events.read_event(_event(location={"floor": 2**31}, device_info={"battery_level": "full"}))
    assert event["floor"] is None and event["battery_level"] is None
    _, event = events.read_event(_event(location={"floor": 2.0, "building": None, "room": {"x": 1}}, anomaly_type=""))
    assert (event["floor"], event["building"], event["room"], event["anomaly_type"]) == (None, None, None, "none")
    _, event = events.read_event(_event(is_anomaly="true", anomaly_type=1.5, device_info={"model": False}))
    assert (event["is_anomaly"], event["anomaly_type"], event["device_model"]) == (True, "1.5", "false")


def test_keys_too_large_make_dead_letters():
    valid = valid_payloads(1)[0]
    reasons, _ = events.read_events([valid, valid, valid], [None, b"k" * events.MAX_KEY_BYTES, b"k" * 1025])
    assert reasons == [None, None, "too_large"]


def test_split_payloads_types_the_valid_events_as_events_frame_does():
    payloads = valid_payloads(20) + [p for p, _ in HOSTILE]
    valid, dead = events.split_payloads(payloads)
    assert len(valid) == 20 + sum(r is None for _, r in HOSTILE)
    assert [r for _, r in dead] == [r for _, r in HOSTILE if r is not None]
    nested = [json.loads(p) for p in payloads if events.read_event(p)[0] is None]
    pd.testing.assert_frame_equal(valid, events.events_frame(nested))


def _parse(payloads: list, keys: list) -> pd.DataFrame:
    return stream.parse_events(pd.Series(payloads, dtype=object), pd.Series(keys, dtype=object))


def test_the_stream_udf_agrees_with_read_event_record_by_record():
    payloads = [p for p, _ in HOSTILE] + valid_payloads(30)
    keys = [b"k" * (events.MAX_KEY_BYTES + 1) if i % 7 == 3 else b"sensor" for i in range(len(payloads))]
    frame = _parse(payloads, keys)
    assert list(frame.columns) == list(stream.PARSED_FIELDS) and len(frame) == len(payloads)
    for row, payload, key in zip(frame.to_dict("records"), payloads, keys, strict=True):
        reason, event = events.read_event(payload, key=key)
        assert (row.pop("reason"), row.pop("dead_letter")) == (
            reason,
            None if reason is None else events.dead_letter_text(payload),
        )
        assert row == (event or dict.fromkeys(events.READ_FIELDS))


def test_the_stream_udf_output_converts_to_its_declared_types():
    # PyFlink converts the frame to Arrow with the UDF's declared types, as below: every value must fit (a floor
    # beyond 32 bits would fail the job), NULLs included.
    arrow = {"STRING": pa.string(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}
    arrow["INT"] = pa.int32()
    declared = {"reason": "STRING", "dead_letter": "STRING", "event_ms": "BIGINT", **stream.FEATURE_TYPES}
    payloads = [p for p, _ in HOSTILE] + valid_payloads(5)
    frame = _parse(payloads, [None] * len(payloads))
    for name in frame.columns:
        column = frame[name]
        pa.Array.from_pandas(column, mask=column.isnull(), type=arrow[declared.get(name, "DOUBLE")])


def test_a_value_cut_to_kept_bytes_gets_the_same_reason_and_dead_letter():
    # The stream job hands its UDF only the first `kept_bytes` of each value.
    cut = events.kept_bytes(events.MAX_VALUE_BYTES)
    straddling = b"a" * (4 * events.DEAD_LETTER_PAYLOAD_CHARS + 2) + "\u20ac".encode() * 30_000  # a char cut in two
    huge = [
        b"x" * (events.MAX_VALUE_BYTES + 1),
        b"x" * 3_000_000,
        "\u20ac\U0001f600".encode() * 40_000,
        b"\xff\xfe" * 60_000,
        straddling,
        b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "pad": "' + "\u00e9".encode() * 40_000 + b'"}',
    ]
    for payload in [p for p, _ in HOSTILE if p is not None] + huge + [b"y" * 10_000] + valid_payloads(3):
        whole, kept = events.read_events([payload]), events.read_events([payload[:cut]])
        assert kept == whole
        if whole[0][0] is not None:
            assert events.dead_letter_text(payload[:cut]) == events.dead_letter_text(payload)
    assert events.dead_letter_text(b"x" * 3_000_000).endswith(f"[cut: more than {events.MAX_VALUE_BYTES:,} bytes]")
    assert events.dead_letter_text(b"y" * 10_000).endswith("[cut: 10,000 bytes in all]")


# -- a profile's events: the same rules, its channels and ranges, flat ------------------------------------------

PUMP = profiles.from_dict(
    {
        "name": "pump",
        "channels": [{"name": "flow", "range": [0, 50]}, {"name": "current"}, {"name": "vibration", "range": [-1, 1]}],
    }
)
FLAT = profiles.event_format(PUMP)
"""A profile's format: `flow` within 0..50, `current` any reading up to `MAX_ABS_READING`, `vibration` within -1..1."""
FLAT_HOSTILE = [
    (_event(flow=10.0, current=-3.5, vibration=0.25, is_anomaly=True, anomaly_type="cavitation"), None),
    (_event(flow=0, current=None, vibration=1), None),  # ranges include their ends; a channel may be null
    (_event(), None),  # ... or absent
    (_event(flow=50.000001), "out_of_range"),
    (_event(flow=-0.1), "out_of_range"),
    (_event(vibration=-1.5), "out_of_range"),
    (_event(current=1e9 + 1), "out_of_range"),  # no range: the global bound
    (_event(current=-1.797e308), "out_of_range"),
    (_event(flow="10"), "wrong_type"),
    (_event(current=True), "wrong_type"),
    (_event(vibration=[0.1]), "wrong_type"),
    (_event(flow=99.0, vibration="x"), "out_of_range"),  # the first channel decides
    (_event(flow="x", vibration=99.0), "wrong_type"),
    (_event(temperature="hot", pressure=1e12, location="B1"), None),  # the default's fields are not this profile's
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T09:00:00Z", "flow": NaN}', "invalid_json"),
    (json.dumps({"sensor_id": "s"}).encode(), "missing_field"),
    (json.dumps({"sensor_id": "", "timestamp": TS}).encode(), "wrong_type"),
    (json.dumps({"sensor_id": "s", "timestamp": "1999-12-31T23:59:59.999Z"}).encode(), "out_of_range"),
    (b"\xff\xfe{", "invalid_encoding"),
    (b"x" * (events.MAX_VALUE_BYTES + 1), "too_large"),
]
"""A profile's events and values that are not, with their reason (None: valid)."""


@pytest.mark.parametrize(("payload", "reason"), FLAT_HOSTILE)
def test_a_profiles_channels_and_ranges_are_checked(payload, reason):
    assert events.read_event(payload, fmt=FLAT)[0] == reason


def test_a_profiles_event_is_flat():
    assert FLAT.fields == ("sensor_id", "event_ms", "flow", "current", "vibration", "is_anomaly", "anomaly_type")
    _, event = events.read_event(FLAT_HOSTILE[0][0], fmt=FLAT)
    assert event == {
        "sensor_id": "s",
        "event_ms": events.epoch_ms(TS),
        "flow": 10.0,
        "current": -3.5,
        "vibration": 0.25,
        "is_anomaly": True,
        "anomaly_type": "cavitation",
    }
    assert all(isinstance(event[c], float) for c in ("flow", "current", "vibration"))
    # Labels read as the default format reads them: only true or "true" is an anomaly, a type of the wrong kind is none
    for label, expected in ((True, True), ("true", True), (1, False), ("yes", False), (None, False)):
        assert events.read_event(_event(is_anomaly=label, anomaly_type=["x"]), fmt=FLAT)[1]["is_anomaly"] is expected
    assert events.read_event(_event(anomaly_type=["x"]), fmt=FLAT)[1]["anomaly_type"] == "none"


def test_the_default_rules_generalise_unchanged():
    # The default profile's format is the one the default calls use; a flat format with the default's three channels
    # and no ranges gives every value of the default's hostile list the same reason.
    assert profiles.event_format(profiles.default()) == events.DEFAULT_FORMAT
    three = events.EventFormat(events.DEFAULT_FORMAT.bounds, context=False)
    payloads = [p for p, _ in HOSTILE] + valid_payloads(20)
    default_reasons, default_rows = events.read_events(payloads)
    reasons, rows = events.read_events(payloads, fmt=three)
    assert reasons == default_reasons == [r for _, r in HOSTILE] + [None] * 20
    for row, default_row in zip(rows, default_rows, strict=True):
        if row is not None:  # the same readings and labels, without location and device_info
            full = dict(zip(events.READ_FIELDS, default_row))
            assert dict(zip(three.fields, row)) == {f: full[f] for f in three.fields}


def test_a_format_with_context_has_the_default_channels():
    with pytest.raises(ValueError, match="location and device_info"):
        events.EventFormat((("flow", 0.0, 1.0),))
    with pytest.raises(ValueError, match="within"):
        events.EventFormat((("flow", -2e9, 1.0),), context=False)
    outside = profiles.from_dict({"name": "big", "channels": [{"name": "x", "range": [-1e12, 1e12]}]})
    assert profiles.event_format(outside).bounds == (("x", -events.MAX_ABS_READING, events.MAX_ABS_READING),)


def test_split_payloads_and_the_udf_read_a_profiles_events():
    payloads = [p for p, _ in FLAT_HOSTILE]
    valid, dead = events.split_payloads(payloads, fmt=FLAT)
    assert list(valid.columns) == [
        "sensor_id",
        "event_time",
        "flow",
        "current",
        "vibration",
        "is_anomaly",
        "anomaly_type",
    ]
    assert len(valid) == sum(r is None for _, r in FLAT_HOSTILE)
    assert [r for _, r in dead] == [r for _, r in FLAT_HOSTILE if r is not None]
    assert valid["flow"].dtype == "float64" and valid["is_anomaly"].dtype == bool
    assert str(valid["event_time"].dtype) == "datetime64[ms, UTC]"
    frame = stream.parse_events(
        pd.Series(payloads, dtype=object), pd.Series([None] * len(payloads), dtype=object), fmt=FLAT
    )
    assert list(frame.columns) == ["reason", "dead_letter", *FLAT.fields]
    assert frame["reason"].tolist() == [r for _, r in FLAT_HOSTILE]
    assert frame.loc[frame["reason"].isna(), "flow"].tolist() == [10.0, 0.0, None, None]
