"""Kafka goes away in the middle of a run: the producer retries, then reports exactly what was not delivered.

The shared platform must never be stopped, so this test starts a throwaway single-node broker of its own (the
platform's Kafka jars, other ports, a temporary log directory), kills it mid-run, and restarts it to count what
really reached the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from sensorops import config, generator, kafka_io
from sensorops.platform import install
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

JARS = config.load().home / "jars" / "kafka"


class Broker:
    """A private KRaft broker+controller process, started and stopped by this test only."""

    def __init__(self, workdir: Path, ports: list[int]) -> None:
        self.port, self.controller = ports
        self.workdir = workdir
        self.props = workdir / "server.properties"
        self.props.write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}\n"
            "controller.listener.names=CONTROLLER\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
            f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller}\n"
            f"log.dirs={workdir / 'data'}\n"
            "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\n"
        )
        install.format_kraft(JARS, self.props)
        self.proc: subprocess.Popen | None = None

    @property
    def servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.workdir / "broker.log").open("ab")
        self.proc = subprocess.Popen(
            ["java", "-Xmx384m", "-cp", f"{JARS}/*", "kafka.Kafka", str(self.props)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            try:
                kafka_io.ensure_topic("ready-check", 1, self.servers)
                return True
            except Exception:
                assert self.proc.poll() is None, f"the test broker exited, see {self.workdir / 'broker.log'}"
                return False

        wait_until(
            ready, timeout=120, interval=1, message=f"the test broker did not start; see {self.workdir}/broker.log"
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)  # our own process, by its id
            self.proc.wait(timeout=30)


@pytest.fixture
def broker(tmp_path: Path, free_ports) -> Iterator[Broker]:
    assert JARS.is_dir(), f"the platform's Kafka jars are missing in {JARS}: run `make up` once"
    b = Broker(tmp_path, free_ports(2))
    b.start()
    yield b
    b.kill()


IN_FLIGHT = 2 * 5 * 256 * 1024 // 400
"""Events a run may have sent but not yet seen acknowledged: per worker, five requests in flight of one 256 KiB batch
of about 400-byte events (`kafka_io.producer`)."""
LOGGED = 10_000 + IN_FLIGHT


@pytest.mark.parametrize("workers", [1, 2])
def test_broker_lost_mid_run_is_reported_exactly(broker: Broker, workers: int) -> None:
    topic = f"outage-{uuid.uuid4().hex[:8]}"
    sim = generator.SensorSimulator(generator.GeneratorConfig(n_sensors=10, interval_s=1.0, seed=4), start="2026-11-27")
    handed: list[int] = []
    killed = threading.Event()

    def logged() -> int:
        return sum(kafka_io.end_offsets(topic, broker.servers).values())

    def batches() -> Iterator[pd.DataFrame]:
        for i, frame in enumerate(sim.chunks(6000, chunk_ticks=100)):  # 60 batches of 1,000 events
            if i == 20:
                # Kill once the log holds LOGGED events: the workers have at most IN_FLIGHT of them unacknowledged,
                # so at least 10,000 were acknowledged however far behind the workers run (a loaded machine).
                wait_until(lambda: logged() >= LOGGED, timeout=120, interval=0.2, message="the first batches lag")
                broker.kill()
                killed.set()
            handed.append(len(frame))
            yield frame
            time.sleep(0.02)

    with pytest.raises(kafka_io.DeliveryError, match="events were NOT delivered") as err:
        kafka_io.produce(
            batches(), topic, broker.servers, workers=workers, delivery_timeout_ms=6000, request_timeout_ms=3000
        )
    report = err.value.report
    assert killed.is_set()
    assert report.sent == sum(handed) == 60_000
    assert report.acknowledged >= 10_000  # the batches before the outage, less what was in flight
    assert report.failed == report.sent - report.acknowledged > 0
    assert f"{report.failed:,} of {report.sent:,}" in str(err.value)

    broker.start()  # same log directory: count what really reached the log
    stored = kafka_io.read(topic, max_records=report.sent, timeout_s=60, servers=broker.servers, decode=None)
    assert report.acknowledged <= len(stored) <= report.sent
