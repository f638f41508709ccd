"""The library's Kafka clients authenticate as the cluster deployment asks (SASL/SCRAM-SHA-512, deploy/k8s): a scratch
broker of the platform's Kafka with a SCRAM listener, the settings from the environment, a wrong password refused."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensorops import config, generator, kafka_io, platform
from sensorops.errors import UserError
from sensorops.platform.layout import Layout

PORT, CONTROLLER_PORT, INTERNAL_PORT = 16092, 16093, 16094
USER = "pipeline-steps"

SERVER = f"""process.roles=broker,controller
node.id=1
listeners=SASL_PLAINTEXT://127.0.0.1:{PORT},INTERNAL://127.0.0.1:{INTERNAL_PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{PORT},INTERNAL://127.0.0.1:{INTERNAL_PORT}
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:{CONTROLLER_PORT}
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
"""


def _java(jars: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["java", "-cp", f"{jars}/*", *args], capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory) -> Iterator[str]:
    """A one-node KRaft broker of the platform's Kafka jars, clients only through SCRAM; yields the password."""
    jars = Layout(config.load().home).kafka_jars  # installed by `make up`
    home = tmp_path_factory.mktemp("kafka-sasl")
    props = home / "server.properties"
    props.write_text(SERVER + f"log.dirs={home / 'data'}\n")
    password = secrets.token_urlsafe(18)
    cluster = _java(jars, "kafka.tools.StorageTool", "random-uuid").stdout.strip()
    scram = f"SCRAM-SHA-512=[name={USER},password={password}]"
    _java(
        jars, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props), "--standalone", "--add-scram", scram
    )
    log = (home / "kafka.log").open("w")
    broker = subprocess.Popen(
        ["java", "-Xms128m", "-Xmx256m", "-cp", f"{jars}/*", "kafka.Kafka", str(props)], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                assert broker.poll() is None, (home / "kafka.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the scratch SCRAM broker did not listen within 60 s"
                time.sleep(0.5)
        yield password
    finally:
        broker.terminate()
        broker.wait(30)
        log.close()


def _scram(password: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{PORT}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "SENSOROPS_KAFKA_BOOTSTRAP_MS": "8000",
    }


def test_the_clients_produce_and_read_through_scram(scram_broker, unique) -> None:
    topic = f"test-sasl-{unique}"
    with config.temporary_environment(_scram(scram_broker)):
        kafka_io.ensure_topic(topic, partitions=1)
        events = generator.simulate(n_sensors=2, duration_s=25, seed=7)
        report = kafka_io.produce(events, topic=topic, partitions=1)
        got = kafka_io.read(topic, max_records=10 * len(events))
        health = platform.check("kafka")
    assert (report.sent, report.failed) == (len(events), 0)
    assert Counter(r["sensor_id"] for r in got) == Counter(events["sensor_id"])
    assert health.ok, health


def test_a_wrong_password_is_refused_with_an_error_that_names_the_credentials(scram_broker, unique) -> None:
    with (
        config.temporary_environment(_scram("not-the-password")),
        pytest.raises(UserError, match="KAFKA_SASL_PASSWORD"),
    ):
        kafka_io.ensure_topic(f"test-sasl-{unique}", partitions=1)
