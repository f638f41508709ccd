"""Kafka round trips on the live platform: complete, in per-sensor order, schema-valid; replay with a bad row."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from sensorops import config, events, generator, kafka_io, replay
from sensorops.errors import ServiceUnavailable

pytestmark = pytest.mark.integration
SENSOROPS = str(Path(sys.executable).with_name("sensorops"))  # the console script of this environment


@pytest.fixture
def topic() -> Iterator[str]:
    name = f"test-kafka-io-{uuid.uuid4().hex[:10]}"
    yield name
    kafka_io.delete_topic(name)


def _per_sensor(values: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        out.setdefault(v["sensor_id"], []).append(v["timestamp"])
    return out


def _frames() -> Iterator[pd.DataFrame]:
    cfg = generator.GeneratorConfig(n_sensors=12, interval_s=0.5, anomaly_rate=0.2, seed=9)
    # A fixed start: a source that workers call must yield the same events each time.
    return generator.SensorSimulator(cfg, start="2026-11-27").chunks(250, chunk_ticks=40)  # 3,000 events, 7 batches


@pytest.mark.parametrize(("workers", "own_source"), [(1, False), (2, False), (1, True), (3, True)])
def test_produced_batch_comes_back_complete_and_in_order(topic: str, workers: int, own_source: bool) -> None:
    # own_source: each worker process generates the events itself and sends the sensors it owns.
    frames = list(_frames())
    readings = pd.concat(frames, ignore_index=True)
    if own_source:
        report = kafka_io.produce(None, topic, source=_frames, workers=workers)
    else:
        report = kafka_io.produce(frames, topic, workers=workers)
    assert (report.sent, report.acknowledged, report.failed) == (len(readings), len(readings), 0)
    assert report.ok and report.events_per_s > 0

    back = kafka_io.read(topic, max_records=len(readings) + 100, timeout_s=30)
    assert len(back) == len(readings)
    sent = _per_sensor(events.to_dicts(readings))
    assert _per_sensor(back) == sent  # same readings, and each sensor's in the order they were produced
    assert events.validate(back[:500]) == []


def test_topic_is_created_with_partitions_and_keys_pick_one_partition(topic: str) -> None:
    assert kafka_io.ensure_topic(topic, partitions=3) == 3
    assert kafka_io.ensure_topic(topic, partitions=8) == 3  # existing topic left as it is
    readings = generator.simulate(n_sensors=6, duration_s=10, seed=1)
    kafka_io.produce(readings, topic)
    raw = kafka_io.read(topic, max_records=1000, timeout_s=20, decode=None)
    assert len(raw) == len(readings)
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.load().kafka_bootstrap_servers, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        seen: dict[bytes, set[int]] = {}
        got = 0
        for _ in range(40):
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    seen.setdefault(r.key, set()).add(tp.partition)
                    got += 1
            if got >= len(readings):
                break
    finally:
        consumer.close()
    assert set(seen) == {s.encode() for s in readings["sensor_id"].astype(str).unique()}
    assert all(len(p) == 1 for p in seen.values())  # one partition per sensor: per-sensor order holds


def test_replay_of_csv_with_a_bad_row_delivers_the_rest(topic: str, tmp_path: Path) -> None:
    path = tmp_path / "recorded.csv"
    path.write_text(
        "when,t,h,p,id,label\n"
        "2026-05-01T08:00:00Z,20.1,41.0,1012.0,lab-1,0\n"
        "2026-05-01T08:00:01Z,20.2,41.1,1012.1,lab-2,0\n"
        "2026-05-01T08:00:02Z,twenty,41.2,1012.2,lab-1,0\n"
        "2026-05-01T08:00:03Z,35.0,41.3,1012.3,lab-2,spike\n"
    )
    mapping = replay.parse_mapping(["temperature=t", "humidity=h", "pressure=p", "sensor_id=id"])
    data = replay.read_csv(path, mapping, "when", label_column="label")
    assert [(b.line, "twenty" in b.reason) for b in data.bad_rows] == [(4, True)]
    report = kafka_io.produce(replay.paced(data.events, speed=0), topic)
    assert report.acknowledged == 3 and report.failed == 0
    back = kafka_io.read(topic, max_records=10, timeout_s=20)
    assert sorted(v["temperature"] for v in back) == [20.1, 20.2, 35.0]
    assert [v for v in back if v["is_anomaly"]][0]["anomaly_type"] == "spike"
    assert events.validate(back) == []


def test_replay_cli_reports_the_bad_row_and_delivers_the_rest(topic: str, tmp_path: Path) -> None:
    path = tmp_path / "tabbed.tsv"
    path.write_text("ts\ttemp\n1767261600\t20.5\n1767261601\t\n1767261602\t20x\n1767261603\t20.8\n")
    cmd = [
        SENSOROPS,
        "replay",
        str(path),
        "--map",
        "temperature=temp",
        "--timestamp-column",
        "ts",
        "--delimiter",
        "\\t",
        "--speed",
        "max",
        "--topic",
        topic,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "line 4: temp '20x' is not a number" in done.stdout
    assert "3 of 3 events acknowledged" in done.stdout
    back = kafka_io.read(topic, max_records=10, timeout_s=20)
    assert [v["temperature"] for v in back] == [20.5, None, 20.8]


def test_generate_cli_backfill_produces_what_it_reports(topic: str) -> None:
    cmd = [
        SENSOROPS,
        "generate",
        "--mode",
        "backfill",
        "--sensors",
        "4",
        "--interval",
        "60",
        "--days",
        "1",
        "--seed",
        "3",
        "--topic",
        topic,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5,760 of 5,760 events acknowledged" in done.stdout
    back = kafka_io.read(topic, max_records=10_000, timeout_s=30)
    assert len(back) == 5760
    assert {v["sensor_id"] for v in back} == {"sensor-001", "sensor-002", "sensor-003", "sensor-004"}


def test_unreachable_kafka_is_a_clear_error() -> None:
    with pytest.raises(ServiceUnavailable, match="Kafka is not reachable at 127.0.0.1:1"):
        kafka_io.produce(generator.simulate(n_sensors=1, duration_s=1), "nowhere", servers="127.0.0.1:1")


def test_records_the_broker_refuses_are_counted_as_not_delivered(topic: str) -> None:
    """A topic that accepts only tiny messages refuses every batch: the report and the error say how many."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=config.load().kafka_bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "200"})])
    finally:
        admin.close()
    readings = generator.simulate(n_sensors=5, duration_s=10, seed=2)
    with pytest.raises(
        kafka_io.DeliveryError, match=f"{len(readings)} of {len(readings)} events were NOT delivered"
    ) as err:
        kafka_io.produce(readings, topic, compression_type=None, delivery_timeout_ms=5000, request_timeout_ms=2000)
    report = err.value.report
    assert (report.sent, report.acknowledged, report.failed) == (len(readings), 0, len(readings))
    assert report.errors
