"""Keyed state is bounded: 30,000 sensor ids pass through the job once, and their state goes once its TTL is over."""

from __future__ import annotations

import time
import uuid

import pytest

from sensorops import flink, kafka_io, stream
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

DISTINCT_IDS = 30_000
TTL_S = 8
QUIET_S = TTL_S + 15  # how long the ten others go on reporting after the burst


def _events(ids: range, stamp_ms: int) -> tuple[list[bytes], list[bytes]]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp_ms / 1000)) + f".{stamp_ms % 1000:03d}Z"
    keys = [f"once-{i:06d}".encode() for i in ids]
    values = [b'{"sensor_id": "%s", "timestamp": "%s", "temperature": 21.5}' % (k, stamp.encode()) for k in keys]
    return keys, values


def _state_bytes(job_id: str) -> int:
    """The state size in the next checkpoint to complete."""
    now = stream.status(job_id=job_id).checkpoint_id
    done = wait_until(lambda: stream.status(job_id=job_id), lambda s: s.checkpoint_id > now, timeout=120, interval=1)
    return done.checkpoint_bytes


def test_state_of_sensors_gone_quiet_expires():
    cfg = stream.StreamJobConfig.scratch(
        "test", uuid.uuid4().hex[:8], checkpoint_interval_s=3, state_ttl_s=TTL_S, archive=False, aggregates=False
    )
    kafka_io.ensure_topic(cfg.source_topic, partitions=2)
    job_id, _ = stream.submit(cfg)
    try:
        flink.wait_running(job_id)
        producer = kafka_io.EventProducer(cfg.source_topic)
        producer.send_batch(*_events(range(DISTINCT_IDS), int(time.time() * 1000)))
        assert producer.close().ok
        wait_until(lambda: stream.status(job_id=job_id).records_in >= DISTINCT_IDS, timeout=180, interval=2)
        full = _state_bytes(job_id)
        # Ten sensors go on reporting, 1,000 readings a second: Flink drops expired state as the stream goes on
        # (timers for the rolling window; a few entries on each state access for the previous reading).
        producer = kafka_io.EventProducer(cfg.source_topic)
        expires_at = time.monotonic() + QUIET_S
        while time.monotonic() < expires_at:
            now_ms = int(time.time() * 1000)
            for i in range(100):
                producer.send_batch(*_events(range(10), now_ms + i))
            time.sleep(1)
        assert producer.close().ok
        after = _state_bytes(job_id)
        mib = 2**20
        print(f"state of {DISTINCT_IDS:,} sensor ids: {full / mib:.1f} MiB; {QUIET_S} s later: {after / mib:.2f} MiB")
        assert full > DISTINCT_IDS * 100  # the state really held every id (about 1 KB each)
        assert after < full / 20
        assert stream.status(job_id=job_id).restarts == 0
    finally:
        stream.remove(cfg)
