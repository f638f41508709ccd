"""The stream job's SQL and its one UDF, without a cluster."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from sensorops import events, flink, generator, stream


def _config() -> stream.StreamJobConfig:
    return stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092")


def _parse(payloads: list, keys: list | None = None, **limits) -> pd.DataFrame:
    keys = keys if keys is not None else [None] * len(payloads)
    return stream.parse_events(pd.Series(payloads, dtype=object), pd.Series(keys, dtype=object), **limits)


def test_parse_events_returns_the_batch_reading_of_a_valid_event():
    event = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]
    frame = _parse([json.dumps(event).encode()])
    _, expected = events.read_event(json.dumps(event))
    assert list(frame.columns) == list(stream.PARSED_FIELDS) and len(frame) == 1
    row = frame.iloc[0].to_dict()
    assert row.pop("reason") is None and row.pop("dead_letter") is None
    assert row == expected


def test_parse_events_returns_the_reason_and_the_text_of_a_dead_letter():
    row = _parse([b'{"sensor_id": "s"}']).iloc[0].tolist()
    assert row[0] == "missing_field" and row[1] == '{"sensor_id": "s"}'
    assert len(row) == len(stream.PARSED_FIELDS) and all(v is None for v in row[2:])


def test_parse_events_never_raises_and_keeps_dead_letters_small():
    oversized_valid = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]
    oversized_valid["sensor_id"] = "s" * 1_500_000  # a valid event with a 1.5 MB key field
    cases = [
        (b"\xff\xfe{", "invalid_encoding"),
        (b"x" * 900_000, "too_large"),
        (json.dumps(oversized_valid).encode(), "too_large"),
        (None, "invalid_json"),
    ]
    frame = _parse([payload for payload, _ in cases])
    assert frame["reason"].tolist() == [reason for _, reason in cases]
    assert all(len(text.encode()) < 3 * events.DEAD_LETTER_PAYLOAD_CHARS + 100 for text in frame["dead_letter"])


def test_an_oversized_key_makes_a_valid_event_a_dead_letter():
    valid = json.dumps(events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]).encode()
    frame = _parse([valid, valid], [b"k" * events.MAX_KEY_BYTES, b"k" * (events.MAX_KEY_BYTES + 1)])
    assert frame["reason"].tolist() == [None, "too_large"]


def test_the_job_bounds_its_state_and_tolerates_failed_checkpoints():
    settings = stream.job_configuration(stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092", state_ttl_s=90))
    assert settings["table.exec.state.ttl"] == "90 s"
    assert int(settings["execution.checkpointing.tolerable-failed-checkpoints"]) > 0


@pytest.mark.parametrize(("interval_s", "pause"), [(10, "1000 ms"), (1, "200 ms"), (0.5, "100 ms")])
def test_the_pause_between_checkpoints_keeps_short_intervals_short(interval_s, pause):
    # Flink parses durations as integers with a unit: "0.2 s" fails the job at submission.
    cfg = stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092", checkpoint_interval_s=interval_s)
    assert stream.job_configuration(cfg)["execution.checkpointing.min-pause"] == pause


def test_no_json_function_in_the_job_sql():
    # Each JSON_VALUE or JSON_QUERY parses the whole payload again: records are decoded once, by parse_events.
    sql = stream.statements(_config())
    text = "\n".join([sql.source, sql.parse, *sql.views, *sql.inserts])
    assert not re.search(r"JSON_(VALUE|QUERY|EXISTS)|IS JSON", text)
    assert text.count("parse_events(") == 1
    # ... and it gets no more of a value than decides its fate.
    assert f"CAST(payload AS VARBINARY({events.kept_bytes(events.MAX_VALUE_BYTES)}))" in sql.parse


def test_watermark_follows_the_configured_delay():
    cfg = stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092", watermark_delay_s=2.5)
    assert stream.statements(cfg).watermark == "event_time - INTERVAL '2.5' SECOND"


def test_rest_address_for_the_flink_client():
    assert flink.rest_address("http://127.0.0.1:8081") == "127.0.0.1:8081"
    assert flink.rest_address("http://flink-jobmanager.sensorops.svc") == "flink-jobmanager.sensorops.svc:80"
    assert flink.rest_address("flink:8081") == "flink:8081"
