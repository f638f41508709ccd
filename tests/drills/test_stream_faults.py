"""Fault drills on the live platform: a numbered stream of events runs through a stream job while a process is
killed, stopped or paused; then a ledger checks that nothing was lost and nothing written twice.

Each acknowledged event must be exactly once in the raw archive (valid) or the dead-letter topic (hostile), at least
once in the features topic (at-least-once: repeats are counted), and no window twice in the aggregates
(exactly-once). The job must run again and its consumer lag drain. Run with `make drill` (not part of `make test`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pytest
from kafka import KafkaProducer
from kafka import errors as kafka_errors

from sensorops import archive, config, flink, kafka_io, stream
from sensorops.kafka_io.admin import committed_offsets
from sensorops.platform import health, local
from sensorops.waiting import wait_until

pytestmark = pytest.mark.drill

HOSTILE = (b"\xff\xfe{", b"not json", b'{"sensor_id": "s", "timestamp": "9999-12-31T00:00:00Z"}')
HOSTILE_EVERY = 250
"""Every 250th record is hostile: the dead-letter path is under the same faults as the rest."""
RECOVERY_BOUND_S = 300.0
SEQ = re.compile(rb'"seq":\s*(\d+)')


@dataclass
class Traffic:
    """Numbered events at a steady rate, every acknowledgement recorded: the ledger's left side."""

    topic: str
    rate: float = 1_000.0
    n_sensors: int = 20
    acked: dict[int, tuple[int, int]] = field(default_factory=dict)
    """seq -> (partition, offset) of every acknowledged record."""
    failed: int = 0
    sent: int = 0
    t0_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def hostile(seq: int) -> bool:
        return seq % HOSTILE_EVERY == HOSTILE_EVERY - 1

    def record(self, seq: int) -> tuple[bytes, bytes]:
        key = f"drill-{seq % self.n_sensors:03d}".encode()
        if self.hostile(seq):
            return key, HOSTILE[(seq // HOSTILE_EVERY) % len(HOSTILE)]
        ms = self.t0_ms + int(seq * 1000 / self.rate)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"
        value = (
            f'{{"schema_version": 1, "sensor_id": "{key.decode()}", "timestamp": "{stamp}", "seq": {seq}, '
            f'"temperature": {20 + seq % 7 / 10}, "humidity": 45.0, "pressure": 1013.0}}'
        )
        return key, value.encode()

    def event_key(self, seq: int) -> tuple[str, int]:
        """(sensor_id, event time in ms) of a valid event: how the features topic names it."""
        return f"drill-{seq % self.n_sensors:03d}", self.t0_ms + int(seq * 1000 / self.rate)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=config.load().kafka_bootstrap_servers, **kafka_io.producer_settings()
        )
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while self.sent < due and not self._stop.is_set():
                seq = self.sent
                key, value = self.record(seq)
                self.sent += 1
                try:
                    future = producer.send(self.topic, value, key)
                except kafka_errors.KafkaError:
                    self.failed += 1  # not handed over (metadata or buffer wait timed out): never acked
                    continue
                future.add_callback(lambda meta, s=seq: self.acked.__setitem__(s, (meta.partition, meta.offset)))
                future.add_errback(lambda _exc: setattr(self, "failed", self.failed + 1))
            time.sleep(0.005)
            if self.sent % 10_000 < self.rate * 0.005 + 1:
                print(f"traffic: sent {self.sent:,}, acked {len(self.acked):,}, failed {self.failed:,}", flush=True)
        # Every record is acked or failed within the delivery timeout; what is not by then never will be (a stuck
        # client): it counts as sent, not acked.
        with contextlib.suppress(kafka_errors.KafkaError):
            producer.flush(timeout=kafka_io.producer_settings()["delivery_timeout_ms"] / 1000 + 30)
        with contextlib.suppress(kafka_errors.KafkaError):
            producer.close(timeout=0)


def _pid(program: str) -> int:
    return local.supervisor(local.layout()).supervisor.getProcessInfo(f"platform:{program}")["pid"]


def _kill(program: str, hold_down_s: float = 0.0) -> None:
    """SIGKILL a supervised program; supervisor restarts it. With `hold_down_s`, the restarted process is frozen
    until that long after the kill, so the service stays down for it (as a crashed host would)."""
    killed_at, old = time.monotonic(), _pid(program)
    os.kill(old, signal.SIGKILL)
    if hold_down_s:
        new = wait_until(lambda: _pid(program), lambda p: p not in (0, old), timeout=30, interval=0.02)
        os.kill(new, signal.SIGSTOP)
        time.sleep(max(0.0, hold_down_s - (time.monotonic() - killed_at)))
        os.kill(new, signal.SIGCONT)


def _pause(program: str, seconds: float) -> None:
    pid = _pid(program)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)


def _stop(program: str, seconds: float) -> None:
    proxy = local.supervisor(local.layout())
    proxy.supervisor.stopProcess(f"platform:{program}", True)
    try:
        time.sleep(seconds)
    finally:
        proxy.supervisor.startProcess(f"platform:{program}", True)


def _jobmanager_lost_and_resubmitted(cfg: stream.StreamJobConfig) -> None:
    """The JobManager killed: the session cluster forgets the job; `submit` resumes it from its retained checkpoint."""
    lost = stream.status(cfg.name).job_id
    _kill("flink-jobmanager")
    wait_until(lambda: health.check("flink").ok, timeout=120, interval=1, message="Flink did not come back")
    assert not flink.find_active(cfg.name), "a session cluster without HA was expected to forget the job"
    resume = flink.resume_point(cfg.name)
    assert resume.startswith(f"s3://{config.CHECKPOINT_BUCKET}/{flink.CHECKPOINTS}/{lost}/chk-"), resume
    job_id, started = stream.submit(cfg)
    assert started and job_id != lost


FAULTS: dict[str, Callable[[stream.StreamJobConfig], None]] = {
    "taskmanager killed": lambda cfg: _kill("flink-taskmanager"),
    "taskmanager killed twice": lambda cfg: (_kill("flink-taskmanager"), time.sleep(8), _kill("flink-taskmanager")),
    "jobmanager killed, job resubmitted": _jobmanager_lost_and_resubmitted,
    "broker killed for 20 s": lambda cfg: _kill("kafka", hold_down_s=20),
    "broker stopped for 90 s": lambda cfg: _stop("kafka", 90),
    "S3 paused (SIGSTOP) for 60 s": lambda cfg: _pause("s3", 60),
}


def _checkpointing(cfg: stream.StreamJobConfig, since: float) -> bool:
    """Running, with a checkpoint triggered after `since` (epoch seconds) completed: proof that it works again."""
    try:
        s = stream.status(cfg.name)
    except Exception:  # noqa: BLE001 (Flink or Kafka may still be coming back)
        return False
    return s.healthy and s.checkpoint_started > since


def _drained(cfg: stream.StreamJobConfig) -> bool:
    try:
        return committed_offsets(cfg.group_id, cfg.source_topic) == kafka_io.end_offsets(cfg.source_topic)
    except Exception:  # noqa: BLE001
        return False


def _ledger(cfg: stream.StreamJobConfig, traffic: Traffic) -> dict:
    """Where every acknowledged event ended up."""
    valid = {s: po for s, po in traffic.acked.items() if not traffic.hostile(s)}
    hostile = {po for s, po in traffic.acked.items() if traffic.hostile(s)}
    raw = wait_until(
        lambda: archive.read(f"{cfg.archive_path}/raw").frame,
        lambda f: set(valid.values()) <= set(zip(f["kafka_partition"], f["kafka_offset"], strict=True)),
        timeout=180,
        interval=5,
        message="the raw archive is missing acknowledged events",
    )
    archived = Counter(zip(raw["kafka_partition"], raw["kafka_offset"], strict=True))
    seqs = Counter(int(m.group(1)) for p in raw["payload"] if (m := SEQ.search(p.encode())))
    dead = kafka_io.read(cfg.dead_letter_topic, committed_only=True, timeout_s=30, max_records=10**7)
    dead_at = Counter((d["kafka_partition"], d["kafka_offset"]) for d in dead)
    features = kafka_io.read(cfg.features_topic, timeout_s=60, max_records=10**7)
    featured = Counter((f["sensor_id"], _ms(f["event_time"])) for f in features)
    aggregates = kafka_io.read(cfg.aggregates_topic, committed_only=True, timeout_s=30, max_records=10**7)
    windows = Counter((a["level"], a["key"], a["window_start"]) for a in aggregates)
    return {
        "acked": len(traffic.acked),
        "hostile": len(hostile),
        "sent": traffic.sent,
        "lost": sum(po not in archived for po in valid.values())
        + sum(po not in dead_at for po in hostile)
        + sum(traffic.event_key(s) not in featured for s in valid),
        "duplicated": sum(n - 1 for n in archived.values())
        + sum(n - 1 for n in dead_at.values())
        + sum(n - 1 for n in seqs.values())
        + sum(n - 1 for n in windows.values()),
        "features_duplicates": sum(n - 1 for n in featured.values()),
        "unacked_stored": len(set(archived) - set(valid.values())),
    }


def _ms(stamp: str) -> int:
    return int(pd.Timestamp(stamp).value // 1_000_000)


@pytest.mark.parametrize("drill", list(FAULTS))
def test_drill(drill: str, record_drill) -> None:
    tag = uuid.uuid4().hex[:8]
    cfg = stream.StreamJobConfig.scratch("drill", tag, checkpoint_interval_s=5)
    kafka_io.ensure_topic(cfg.source_topic, partitions=2)
    job_id, _ = stream.submit(cfg, fresh=True)
    try:
        flink.wait_running(job_id)
        traffic = Traffic(cfg.source_topic).start()
        wait_until(lambda: stream.status(cfg.name).checkpoints_completed >= 2, timeout=120, interval=1)
        FAULTS[drill](cfg)
        fault_over, since = time.monotonic(), time.time()
        wait_until(lambda: _checkpointing(cfg, since), timeout=RECOVERY_BOUND_S, interval=1, message=f"{drill}: stuck")
        recovered_s = time.monotonic() - fault_over
        time.sleep(15)  # traffic goes on after the recovery
        traffic.stop()
        stopped = time.monotonic()
        wait_until(lambda: _drained(cfg), timeout=RECOVERY_BOUND_S, interval=1, message=f"{drill}: lag did not drain")
        drained_s = time.monotonic() - stopped
        final = stream.status(cfg.name)
        ledger = _ledger(cfg, traffic)
        row = {
            "drill": drill,
            **ledger,
            "restarts": final.restarts,
            "recovered_s": round(recovered_s, 1),
            "drained_s": round(drained_s, 1),
        }
        record_drill(row)
        print(row)
        assert final.state == "RUNNING"
        assert ledger["lost"] == 0 and ledger["duplicated"] == 0, row
        assert ledger["acked"] <= ledger["sent"]
    finally:
        stream.remove(cfg)


LOAD_RATE = float(os.environ.get("DRILL_LOAD_RATE", "10000"))
"""Ten times the nominal 1,000 events/s."""
LOAD_MINUTES = float(os.environ.get("DRILL_LOAD_MINUTES", "15"))
DRAIN_BOUND_S = 120.0


def _source_lag(cfg: stream.StreamJobConfig) -> int:
    committed = committed_offsets(cfg.group_id, cfg.source_topic)  # first: the end offsets read after are >= it
    ends = kafka_io.end_offsets(cfg.source_topic)
    return sum(end - committed.get(p, 0) for p, end in ends.items())


def _taskmanager_rss_mb() -> float:
    import psutil

    tm = psutil.Process(_pid("flink-taskmanager"))
    return sum(p.memory_info().rss for p in [tm, *tm.children(recursive=True)]) / 2**20


def test_load(record_drill) -> None:
    """Ten times the nominal rate for 15 minutes: lag, checkpoint duration, restarts and memory every 10 s."""
    cfg = stream.StreamJobConfig.scratch("drill", uuid.uuid4().hex[:8], checkpoint_interval_s=10)
    kafka_io.ensure_topic(cfg.source_topic, partitions=4)
    job_id, _ = stream.submit(cfg, fresh=True)
    samples = []
    try:
        flink.wait_running(job_id)
        traffic = Traffic(cfg.source_topic, rate=LOAD_RATE, n_sensors=200).start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < LOAD_MINUTES * 60:
            time.sleep(10)
            s = stream.status(job_id=job_id)
            samples.append(
                {
                    "t_s": round(elapsed),
                    "acked": len(traffic.acked),
                    "lag": _source_lag(cfg),
                    "checkpoint_s": s.checkpoint_s,
                    "restarts": s.restarts,
                    "taskmanager_mb": round(_taskmanager_rss_mb()),
                }
            )
            print(samples[-1])
        traffic.stop()
        stopped = time.monotonic()
        wait_until(lambda: _drained(cfg), timeout=20 * 60, interval=2, message="the load test's lag did not drain")
        drained_s = time.monotonic() - stopped
        final = stream.status(job_id=job_id)
        valid = sum(not traffic.hostile(s) for s in traffic.acked)
        archived = wait_until(
            lambda: stream.status(job_id=job_id).records_out.get("raw_archive", 0),
            lambda n: n >= valid,
            timeout=120,
            interval=5,
        )
        row = {
            "drill": f"load: {LOAD_RATE:,.0f} events/s for {LOAD_MINUTES:g} min",
            "acked": len(traffic.acked),
            "hostile": len(traffic.acked) - valid,
            "lost": max(0, valid - archived),
            "duplicated": max(0, archived - valid),
            "features_duplicates": "",
            "unacked_stored": "",
            "restarts": final.restarts,
            "recovered_s": "",
            "drained_s": round(drained_s, 1),
            "achieved_rate": round(len(traffic.acked) / (stopped - started)),
            "max_checkpoint_s": max(x["checkpoint_s"] for x in samples),
            "max_taskmanager_mb": max(x["taskmanager_mb"] for x in samples),
            "samples": samples,
        }
        record_drill(row)
        print({k: v for k, v in row.items() if k != "samples"})
        assert final.state == "RUNNING" and row["lost"] == 0
        assert drained_s <= DRAIN_BOUND_S, f"the lag took {drained_s:.0f} s to drain (bound {DRAIN_BOUND_S:.0f} s)"
    finally:
        stream.remove(cfg)
