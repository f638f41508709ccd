"""The library's Kafka clients authenticate as the cluster deployment asks (SASL/SCRAM-SHA-512, deploy/k8s): a scratch
broker of the platform's Kafka with a SCRAM listener, the settings from the environment, a wrong password refused."""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from sensorops import config, generator, kafka_io, platform
from sensorops.errors import UserError
from sensorops.platform import install
from sensorops.platform.layout import Layout
from sensorops.stream.tables import kafka_connection, kafka_sink, with_options

USER = "pipeline-steps"

SERVER = """process.roles=broker,controller
node.id=1
listeners=SASL_PLAINTEXT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal_port}
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# The log cleaner's 128 MiB dedupe buffer in a 256 MiB heap: the broker died of OutOfMemoryError at start, once (CI).
log.cleaner.dedupe.buffer.size=16777216
"""


@pytest.fixture(scope="module")
def scram_broker(tmp_path_factory, free_ports) -> Iterator[dict[str, str]]:
    """A one-node KRaft broker of the platform's Kafka jars, clients only through SCRAM, on free ports; yields the
    client settings that reach it."""
    jars = Layout(config.load().home).kafka_jars  # installed by `make up`
    home = tmp_path_factory.mktemp("kafka-sasl")
    props = home / "server.properties"
    port, internal_port, controller_port = free_ports(3)
    server = SERVER.format(port=port, internal_port=internal_port, controller_port=controller_port)
    props.write_text(server + f"log.dirs={home / 'data'}\n")
    password = secrets.token_urlsafe(18)
    install.format_kraft(jars, props, "--add-scram", f"SCRAM-SHA-512=[name={USER},password={password}]")
    log = (home / "kafka.log").open("w")
    broker = subprocess.Popen(
        ["java", "-Xms128m", "-Xmx384m", "-cp", f"{jars}/*", "kafka.Kafka", str(props)], stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert broker.poll() is None, (home / "kafka.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "the scratch SCRAM broker did not listen within 60 s"
                time.sleep(0.5)
        yield _scram(port, password)
    finally:
        broker.terminate()
        broker.wait(30)
        log.close()


def _scram(port: int, password: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "SENSOROPS_KAFKA_BOOTSTRAP_MS": "4000",
    }


def test_the_clients_produce_and_read_through_scram(scram_broker, unique) -> None:
    topic = f"test-sasl-{unique}"
    with config.temporary_environment(scram_broker):
        kafka_io.ensure_topic(topic, partitions=1)
        events = generator.simulate(n_sensors=2, duration_s=25, seed=7)
        report = kafka_io.produce(events, topic=topic, partitions=1)
        got = kafka_io.read(topic, max_records=10 * len(events))
        health = platform.check("kafka")
    assert (report.sent, report.failed) == (len(events), 0)
    assert Counter(r["sensor_id"] for r in got) == Counter(events["sensor_id"])
    assert health.ok, health


def test_a_wrong_password_is_refused_with_an_error_that_names_the_credentials(scram_broker, unique) -> None:
    wrong = {**scram_broker, "KAFKA_SASL_PASSWORD": "not-the-password"}
    with config.temporary_environment(wrong), pytest.raises(UserError, match="KAFKA_SASL_PASSWORD"):
        kafka_io.ensure_topic(f"test-sasl-{unique}", partitions=1)


def test_the_flink_connector_reads_and_writes_through_scram(scram_broker, unique) -> None:
    """The connector options of the project's jobs (`kafka_connection`, `kafka_sink`) in a local Flink mini cluster:
    the relocated login module and the password put in as each statement executes."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    source, copy = f"test-sasl-{unique}-in", f"test-sasl-{unique}-out"
    with config.temporary_environment(scram_broker):
        servers = config.load().kafka_bootstrap_servers
        for topic in (source, copy):
            kafka_io.ensure_topic(topic, partitions=1)
        events = generator.simulate(n_sensors=3, duration_s=10, seed=3)
        kafka_io.produce(events, topic=source, partitions=1)
        env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        env.get_config().set("parallelism.default", "1")
        lib = Layout(config.load().home).flink_lib  # the session cluster's jars: the connector and zstd
        jars = [*lib.glob("flink-sql-connector-kafka-*.jar"), *lib.glob("zstd-jni-*.jar")]
        env.get_config().set("pipeline.jars", ";".join(j.as_uri() for j in jars))
        read_all = {"scan.startup.mode": "earliest-offset", "scan.bounded.mode": "latest-offset"}
        source_options = {"connector": "kafka", "topic": source, **kafka_connection(servers), **read_all}
        tables = [
            f"CREATE TABLE src (sensor_id STRING) {with_options({**source_options, 'value.format': 'json'})}",
            f"CREATE TABLE dst (sensor_id STRING) {kafka_sink(copy, servers, 'at-least-once', unique)}",
        ]
        assert not any(scram_broker["KAFKA_SASL_PASSWORD"] in t for t in tables), "the SQL as built holds no password"
        for table in tables:
            env.execute_sql(kafka_io.with_password(table))
        env.execute_sql("INSERT INTO dst SELECT sensor_id FROM src").wait(120_000)
        copied = kafka_io.read(copy, max_records=10 * len(events))
    assert Counter(r["sensor_id"] for r in copied) == Counter(events["sensor_id"])
