"""The stream job's SQL and its one UDF, without a cluster."""

from __future__ import annotations

import json
import re

from sensorops import events, flink, generator, stream


def _config() -> stream.StreamJobConfig:
    return stream.StreamJobConfig(bootstrap_servers="127.0.0.1:9092")


def test_parse_event_returns_the_batch_reading_of_a_valid_event():
    event = events.to_dicts(generator.simulate(n_sensors=1, duration_s=1, seed=3))[0]
    row = stream.parse_event(json.dumps(event))
    _, expected = events.read_event(json.dumps(event))
    assert row[0] is None
    assert dict(zip(stream.PARSED_FIELDS[1:], row[1:])) == expected


def test_parse_event_returns_only_the_reason_of_a_dead_letter():
    row = stream.parse_event('{"sensor_id": "s"}')
    assert row[0] == "missing_field"
    assert len(row) == len(stream.PARSED_FIELDS) and all(v is None for v in row[1:])


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
