"""How the Kafka clients authenticate: the settings become kafka-python's options and the Flink connector's
`properties.*`, a SASL setting without its user or password is a one-line error, and no secret is printed."""

from __future__ import annotations

import pytest

from sensorops import config, kafka_io
from sensorops.errors import UserError
from sensorops.stream import job, tables

SCRAM = {
    "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
    "KAFKA_SASL_MECHANISM": "scram-sha-512",
    "KAFKA_SASL_USERNAME": "stream-job",
    "KAFKA_SASL_PASSWORD": "p\"a\\s's",
}


def test_plaintext_adds_no_credentials() -> None:
    with config.temporary_environment({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}):
        assert kafka_io.client_security() == {"security_protocol": "PLAINTEXT"}
        assert tables.kafka_connection("b:9092") == {
            "properties.bootstrap.servers": "b:9092",
            "properties.security.protocol": "PLAINTEXT",
        }


def test_scram_settings_become_both_clients_options() -> None:
    with config.temporary_environment(SCRAM):
        assert kafka_io.client_security() == {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": "stream-job",
            "sasl_plain_password": "p\"a\\s's",
        }
        options = tables.kafka_connection("b:9094")
    assert options["properties.sasl.mechanism"] == "SCRAM-SHA-512"
    # The SQL connector shades the Kafka client, so the login module is named by its relocated class.
    jaas = options["properties.sasl.jaas.config"]
    assert jaas == (
        "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="stream-job" password="${KAFKA_SASL_PASSWORD}";'
    )
    # The password goes in only as the job executes a statement, quoted for JAAS inside a SQL string literal.
    with config.temporary_environment(SCRAM):
        assert kafka_io.with_password(f"'{jaas}'").endswith("""password="p\\"a\\\\s''s";'""")


def test_the_job_sql_carries_the_credentials_into_every_kafka_table() -> None:
    with config.temporary_environment(SCRAM):
        sql = job.statements(job.StreamJobConfig(bootstrap_servers="b:9094"))
    tables = [s for s in [sql.source, *sql.views] if "'connector' = 'kafka'" in s]
    assert len(tables) >= 4  # the source, features, aggregates and dead letters
    assert all("'properties.sasl.jaas.config'" in t for t in tables)
    assert not any(SCRAM["KAFKA_SASL_PASSWORD"] in t for t in tables)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "not one of PLAINTEXT"),
        ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "not one of SCRAM-SHA-512"),
        ({"KAFKA_SASL_PASSWORD": ""}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ],
)
def test_an_incomplete_setting_is_a_one_line_error(changes, message) -> None:
    with config.temporary_environment({**SCRAM, **changes}), pytest.raises(UserError, match=message):
        kafka_io.client_security()


def test_the_password_is_not_in_the_settings_repr() -> None:
    with config.temporary_environment(SCRAM):
        assert 'p"a' not in repr(config.load())


def test_the_producer_benchmarks_java_reference_is_configured_as_the_projects_producer() -> None:
    """`bench generate` measures the client against Kafka's ProducerPerformance with the same settings, SASL included
    (in a file only its owner reads, with the password itself: no SQL is built from it)."""
    from sensorops.bench.generate import java_producer_properties

    with config.temporary_environment(SCRAM):
        props = dict(line.split("=", 1) for line in java_producer_properties("b:9094").splitlines())
        python = kafka_io.producer_settings()
    assert props["acks"] == "all" and props["enable.idempotence"] == "true"
    assert props["compression.type"] == python["compression_type"] and props["linger.ms"] == str(python["linger_ms"])
    assert props["batch.size"] == str(python["batch_size"]) and props["bootstrap.servers"] == "b:9094"
    assert props["sasl.jaas.config"].endswith('password="p\\"a\\\\s\'s";')
    assert props["sasl.jaas.config"].startswith("org.apache.kafka.common")  # the Java client is not relocated
