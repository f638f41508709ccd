"""The stream job on the live session cluster: counts balance, archive layout, stream = batch, resume after cancel."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest
from kafka import KafkaProducer

from sensorops import archive, config, events, features, flink, generator, kafka_io, stream
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

MALFORMED = [
    (b"not json at all", "invalid_json"),
    (b'["an", "array"]', "invalid_json"),
    (b'{"timestamp": "2026-11-27T00:00:01.000Z", "temperature": 20.0}', "missing_field"),
    (b'{"sensor_id": "sensor-001", "temperature": 20.0}', "missing_field"),
    (b'{"sensor_id": "sensor-001", "timestamp": "yesterday"}', "wrong_type"),
    (b'{"sensor_id": "sensor-001", "timestamp": "2026-11-27T00:00:01.000Z", "temperature": "hot"}', "wrong_type"),
    (b'{"sensor_id": 42, "timestamp": "2026-11-27T00:00:01.000Z"}', "wrong_type"),
]
HOSTILE = [
    (b"\xff\xfe{", "invalid_encoding"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:01.000Z", "pad": "' + b"x" * 100_000 + b'"}', "too_large"),
    (b'{"sensor_id": "s", "timestamp": "9999-12-31T00:00:00.000Z"}', "out_of_range"),
    (b'{"sensor_id": "s", "timestamp": "1999-12-31T23:59:59.000Z"}', "out_of_range"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:01.000Z", "pressure": 1.797e308}', "out_of_range"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:01.000Z", "temperature": NaN}', "invalid_json"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:01.000Z", "temperature": 1e400}', "invalid_json"),
    (b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:01.5Z\\n"}', "wrong_type"),
]
"""Values that once failed or endangered the job (a non-UTF-8 value restarted it without end): each must become a
dead letter with its reason while the job keeps running."""
MALFORMED += HOSTILE
OVERSIZED_KEY = b"k" * (events.MAX_KEY_BYTES + 1)
"""The key of a record whose value is valid: `too_large` all the same."""
VALID_VALUE = b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:02Z"}'
KEYED = [(None, m) for m, _ in MALFORMED] + [(OVERSIZED_KEY, VALID_VALUE)]
KEYED_REASONS = [reason for _, reason in MALFORMED] + ["too_large"]
ODD_VALID = [
    (
        b"s",
        b'{"sensor_id": "s", "timestamp": "2026-11-27T00:00:03Z", "temperature": 21.0, "humidity": 50.0, '
        b'"pressure": 1013.0, "location": {"floor": 2147483648}}',
    )
]
"""Valid events with a field that once failed the job (a floor beyond a 32-bit INT): it becomes null."""


def _produce_raw(topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.load().kafka_bootstrap_servers, acks="all")
    for key, value in records:
        producer.send(topic, value, key=key)
    producer.flush()
    producer.close()


def _wait_for(predicate, timeout: float = 120.0, every: float = 2.0):
    """Poll `predicate` until it is true."""
    wait_until(predicate, timeout=timeout, interval=every)


def _at_least(read, n: int, timeout: float = 120.0):
    """Poll `read()` until it returns `n` or more rows; return them."""
    return wait_until(read, lambda rows: len(rows) >= n, timeout=timeout, interval=2, message=f"fewer than {n} rows")


@pytest.fixture(scope="module")
def job():
    tag = uuid.uuid4().hex[:8]
    cfg = stream.StreamJobConfig.scratch("test", tag, checkpoint_interval_s=2, watermark_delay_s=5)
    in_order = generator.simulate(n_sensors=5, duration_s=60, seed=1, start="2026-11-27T00:00:00Z")
    # Out of order: readings of the same sensors 40 s older than the newest, well behind the watermark.
    late = generator.simulate(n_sensors=5, duration_s=5, seed=2, start="2026-11-27T00:00:20.250Z")
    kafka_io.ensure_topic(cfg.source_topic, partitions=2)
    kafka_io.produce(in_order, topic=cfg.source_topic)
    _produce_raw(cfg.source_topic, KEYED + ODD_VALID)
    produced = len(in_order) + len(late) + len(KEYED) + len(ODD_VALID)
    job_id, started = stream.submit(cfg)
    assert started
    try:
        flink.wait_running(job_id)
        _wait_for(lambda: stream.status(job_id=job_id).records_in >= produced - len(late))
        time.sleep(2)  # let the watermark pass the in-order readings, so that the next ones are late
        kafka_io.produce(late, topic=cfg.source_topic)
        _wait_for(lambda: stream.status(job_id=job_id).records_in >= produced)
        yield {"cfg": cfg, "job_id": job_id, "produced": produced, "valid": len(in_order) + len(late) + len(ODD_VALID)}
    finally:
        stream.remove(cfg)


def _committed_features(cfg: stream.StreamJobConfig, expected: int) -> list[dict]:
    return _at_least(lambda: kafka_io.read(cfg.features_topic, committed_only=True, timeout_s=20), expected)


def test_counts_balance_with_dead_letters(job):
    cfg = job["cfg"]
    rows = _committed_features(cfg, job["valid"])
    dead = _at_least(lambda: kafka_io.read(cfg.dead_letter_topic, committed_only=True, timeout_s=20), len(KEYED))
    assert len(rows) + len(dead) == job["produced"]
    # ... and so do the counts `sensorops stream status` shows per sink (each file writer named by what feeds it).
    expected = {"raw_archive": len(rows), "features_archive": len(rows), "features_sink": len(rows)}
    expected["dead_letter_sink"] = len(dead)
    counted = wait_until(  # Flink's REST API refreshes its metrics every 10 s
        lambda: stream.status(job_id=job["job_id"]).records_out,
        lambda out: all(out.get(sink) == n for sink, n in expected.items()),
        timeout=60,
        interval=5,
        message="the per-sink counts of `stream status` never balanced",
    )
    assert {sink: counted[sink] for sink in expected} == expected
    assert sorted(d["reason"] for d in dead) == sorted(KEYED_REASONS)
    assert {d["payload"] for d in dead} == {events.dead_letter_text(value) for _, value in KEYED}


def test_hostile_input_neither_stops_nor_restarts_the_job(job):
    status = stream.status(job_id=job["job_id"])
    assert status.state == "RUNNING" and status.restarts == 0
    assert status.records_in >= job["produced"]


def test_late_events_are_kept_and_counted(job):
    raw = _at_least(lambda: archive.read(f"{job['cfg'].archive_path}/raw").frame, job["valid"])
    assert len(raw) == job["valid"]
    assert raw["is_late"].sum() > 0


def test_archive_layout(job):
    cfg = job["cfg"]
    archived = _at_least(lambda: archive.read(f"{cfg.archive_path}/features").frame, job["valid"])
    assert list(archived.columns) == features.FEATURE_COLUMNS
    assert len(archived) == job["valid"]
    from pyarrow import fs as pafs

    from sensorops import storage

    root = cfg.archive_path.removeprefix("s3://") + "/features"
    files = storage.pyarrow_filesystem().get_file_info(pafs.FileSelector(root, recursive=True))
    parts = {f.path[len(root) + 1 :].rsplit("/", 1)[0] for f in files if f.type == pafs.FileType.File}
    assert parts and all(pd.Series(list(parts)).str.fullmatch(r"dt=\d{4}-\d{2}-\d{2}/hour=\d{2}"))
    assert "dt=2026-11-27/hour=00" in parts


def test_archive_holds_the_rows_of_the_features_topic(job):
    cfg = job["cfg"]
    topic = stream.features_frame(_committed_features(cfg, job["valid"]))
    archived = _at_least(lambda: archive.read(f"{cfg.archive_path}/features").frame, job["valid"])
    both = topic.merge(archived, on=["sensor_id", "event_time"], suffixes=("_topic", "_archive"), validate="1:1")
    assert len(both) == len(topic) == len(archived)  # same instants: the archive's timestamps are not shifted
    assert np.allclose(both["temp_rolling_mean_topic"], both["temp_rolling_mean_archive"], equal_nan=True)


def test_stream_features_equal_batch(job):
    cfg = job["cfg"]
    got = stream.features_frame(_committed_features(cfg, job["valid"]))
    source = list(kafka_io.records(cfg.source_topic, timeout_s=30))
    valid, dead = events.split_payloads([r.value for r in source], keys=[r.key for r in source])
    assert len(dead) == len(KEYED)
    expected = features.compute_features(valid)
    merged = expected.merge(got, on=["sensor_id", "event_time"], suffixes=("_batch", "_stream"), validate="1:1")
    assert len(merged) == len(expected) == len(got)
    for column in features.FEATURE_COLUMNS[2:]:
        batch, streamed = merged[f"{column}_batch"], merged[f"{column}_stream"]
        if batch.dtype.kind == "f":
            same = np.isclose(batch, streamed.astype(float), rtol=1e-6, atol=1e-6, equal_nan=True)
        elif batch.dtype.kind in "iu":  # nullable integers: a null floor reads back as NaN in a float column
            same = batch.astype("Int64").astype(str).to_numpy() == (
                pd.to_numeric(streamed).astype("Int64").astype(str).to_numpy()
            )
        else:
            same = batch.astype(str).to_numpy() == streamed.astype(str).to_numpy()
        assert same.all(), f"{column} differs on {int((~same).sum())} rows"


def test_submit_twice_does_not_duplicate(job):
    job_id, started = stream.submit(job["cfg"])
    assert (job_id, started) == (job["job_id"], False)
    assert [j["jid"] for j in flink.jobs(job["cfg"].name) if j["state"] in flink.ACTIVE_STATES] == [job_id]


def test_cancel_and_resubmit_resumes_without_duplicates(job):
    cfg = job["cfg"]
    _wait_for(lambda: stream.status(job_id=job["job_id"]).checkpoints_completed >= 2)
    final = stream.cancel(cfg.name)
    assert final is not None and final.state == "CANCELED" and final.last_checkpoint
    more = generator.simulate(n_sensors=5, duration_s=10, seed=3, start="2026-11-27T00:01:00Z")
    kafka_io.produce(more, topic=cfg.source_topic)
    job_id, started = stream.submit(cfg)
    assert started and job_id != job["job_id"]
    job["job_id"] = job_id
    flink.wait_running(job_id)
    total = job["valid"] + len(more)
    raw = _at_least(lambda: archive.read(f"{cfg.archive_path}/raw").frame, total, timeout=180)
    assert len(raw) == total
    assert not raw.duplicated(["kafka_partition", "kafka_offset"]).any()
    archived = archive.read(f"{cfg.archive_path}/features").frame
    assert len(archived) == total


def test_aggregates_per_sensor_and_building(job):
    # Runs after the resume test, whose later readings move the watermark past the first minute's end.
    rows = _at_least(lambda: kafka_io.read(job["cfg"].aggregates_topic, committed_only=True, timeout_s=20), 1)
    levels = {r["level"] for r in rows}
    assert levels == {"sensor", "building"}
    first = [r for r in rows if r["level"] == "sensor" and r["window_start"].startswith("2026-11-27T00:00:00")]
    assert first and all(r["temperature_min"] <= r["temperature_mean"] <= r["temperature_max"] for r in first)
