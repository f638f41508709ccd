"""The stream job's SQL and its one UDF, without a cluster."""

from __future__ import annotations

import json
import re

from sensorops import events, flink, generator, stream


def _config() -> stream.StreamJobConfig:
    return stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092")


def test_parse_event_returns_the_batch_reading_of_a_valid_event():
    event = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]
    row = stream.parse_event(json.dumps(event).encode())
    _, expected = events.read_event(json.dumps(event))
    assert row[0] is None and row[1] is None
    assert dict(zip(stream.PARSED_FIELDS[2:], row[2:])) == expected


def test_parse_event_returns_the_reason_and_the_text_of_a_dead_letter():
    row = stream.parse_event(b'{"sensor_id": "s"}')
    assert row[0] == "missing_field" and row[1] == '{"sensor_id": "s"}'
    assert len(row) == len(stream.PARSED_FIELDS) and all(v is None for v in row[2:])


def test_parse_event_never_raises_and_keeps_dead_letters_small():
    oversized_valid = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]
    oversized_valid["sensor_id"] = "s" * 1_500_000  # a valid event with a 1.5 MB key field
    for payload, reason in [
        (b"\xff\xfe{", "invalid_encoding"),
        (b"x" * 900_000, "too_large"),
        (json.dumps(oversized_valid).encode(), "too_large"),
        (None, "invalid_json"),
    ]:
        row = stream.parse_event(payload)
        assert row[0] == reason
        assert len(row[1].encode()) < 3 * events.DEAD_LETTER_PAYLOAD_CHARS + 100


def test_an_oversized_key_makes_a_valid_event_a_dead_letter():
    valid = json.dumps(events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]).encode()
    assert stream.parse_event(valid, b"k" * events.MAX_KEY_BYTES)[0] is None
    assert stream.parse_event(valid, b"k" * (events.MAX_KEY_BYTES + 1))[0] == "too_large"


def test_the_job_bounds_its_state_and_tolerates_failed_checkpoints():
    settings = stream.job_configuration(stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092", state_ttl_s=90))
    assert settings["table.exec.state.ttl"] == "90 s"
    assert int(settings["execution.checkpointing.tolerable-failed-checkpoints"]) > 0


def test_no_json_function_in_the_job_sql():
    # Each JSON_VALUE or JSON_QUERY parses the whole payload again: records are decoded once, by parse_event.
    sql = stream.statements(_config())
    text = "\n".join([sql.source, sql.parse, *sql.views, *sql.inserts])
    assert not re.search(r"JSON_(VALUE|QUERY|EXISTS)|IS JSON", text)
    assert text.count("parse_event(") == 1


def test_watermark_follows_the_configured_delay():
    cfg = stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092", watermark_delay_s=2.5)
    assert stream.statements(cfg).watermark == "event_time - INTERVAL '2.5' SECOND"


def test_rest_address_for_the_flink_client():
    assert flink.rest_address("http://127.0.0.1:8081") == "127.0.0.1:8081"
    assert flink.rest_address("http://flink-jobmanager.sensorops.svc") == "flink-jobmanager.sensorops.svc:80"
    assert flink.rest_address("flink:8081") == "flink:8081"
