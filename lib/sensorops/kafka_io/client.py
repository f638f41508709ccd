"""What every Kafka client of the library shares: the brokers, how long to try, the errors that name the fix."""

from __future__ import annotations

import logging
import os
import re
import socket
from typing import Any

from sensorops import config
from sensorops.errors import ServiceUnavailable, UserError

BOOTSTRAP_MS = 5_000
"""How long a client tries to reach Kafka before saying it is down (`SENSOROPS_KAFKA_BOOTSTRAP_MS` overrides it)."""

PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}
"""The SASL mechanisms the library speaks, with the JAAS login module the Java clients (Flink's connector) take."""

TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
"""What Kafka accepts as a topic name."""


class MissingTopic(UserError):
    """The topic does not exist on the cluster."""

    def __init__(self, topic: str, servers: str) -> None:
        super().__init__(
            f"topic {topic!r} does not exist at {servers}; create it with `kafka_io.ensure_topic` "
            "(or start the stage that writes it)"
        )
        self.topic = topic


def bootstrap_ms() -> int:
    """`BOOTSTRAP_MS`, or `SENSOROPS_KAFKA_BOOTSTRAP_MS` when set (tests against a closed port use a short one)."""
    value = os.environ.get("SENSOROPS_KAFKA_BOOTSTRAP_MS", "")
    return int(value) if value.isdigit() and int(value) > 0 else BOOTSTRAP_MS


def bootstrap_servers(servers: str | None) -> str:
    """The given servers, or the configured `KAFKA_BOOTSTRAP_SERVERS`; `UserError` unless each is `host[:port]`."""
    servers = servers or config.load().kafka_bootstrap_servers
    for server in servers.split(","):
        host, colon, port = server.strip().rpartition(":") if ":" in server else (server.strip(), "", "")
        if not host.strip("[]") or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
            raise UserError(
                f"{servers!r} is not a list of Kafka brokers; give host:port[,host:port], e.g. 127.0.0.1:9092 "
                "(--kafka-servers or KAFKA_BOOTSTRAP_SERVERS)"
            )
    return servers


def check_topic(topic: str) -> str:
    """`topic`, or `UserError` if Kafka would refuse the name."""
    if not TOPIC_NAME.fullmatch(topic) or topic in (".", ".."):
        raise UserError(f"{topic!r} is not a Kafka topic name; use 1 to 249 of the characters a-z A-Z 0-9 . _ -")
    return topic


def unreachable(servers: str, exc: Exception) -> ServiceUnavailable | UserError:
    """The error for a client that could not bootstrap: the service is down, or (its port answering, SASL on) the
    credentials were refused; kafka-python reports both as a bootstrap timeout."""
    s = config.load()
    if s.kafka_security_protocol.startswith("SASL_") and _port_answers(servers):
        return UserError(
            f"Kafka at {servers} answers but did not let {s.kafka_sasl_username!r} in ({exc}); check "
            f"KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM ({s.kafka_sasl_mechanism})"
        )
    return ServiceUnavailable(f"Kafka is not reachable at {servers} ({exc}). Start the platform with `make up`.")


def _port_answers(servers: str) -> bool:
    host, _, port = servers.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port or 9092)), timeout=2).close()
        return True
    except (OSError, ValueError):
        return False


def quiet_client_logs(level: int = logging.CRITICAL) -> None:
    """Raise kafka-python's log level (it logs every connection at INFO and slow loop turns at WARNING)."""
    logging.getLogger("kafka").setLevel(level)


def _security(settings: config.Settings | None) -> config.Settings:
    """The settings, checked: a known protocol, and for SASL a known mechanism with a user and a password."""
    s = settings or config.load()
    if s.kafka_security_protocol not in PROTOCOLS:
        raise UserError(f"KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if s.kafka_security_protocol.startswith("SASL_"):
        if s.kafka_sasl_mechanism not in SASL_MECHANISMS:
            raise UserError(
                f"KAFKA_SASL_MECHANISM={s.kafka_sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
        if not (s.kafka_sasl_username and s.kafka_sasl_password):
            raise UserError(
                f"KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
    return s


def client_security(settings: config.Settings | None = None) -> dict[str, Any]:
    """How kafka-python clients authenticate: nothing for PLAINTEXT, else the protocol and the SASL user."""
    s = _security(settings)
    options: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": s.kafka_sasl_mechanism,
            "sasl_plain_username": s.kafka_sasl_username,
            "sasl_plain_password": s.kafka_sasl_password,
        }
    return options


PASSWORD_PLACEHOLDER = "${KAFKA_SASL_PASSWORD}"
"""Where the password goes in `java_security`'s JAAS line until `with_password` puts it in, at the last moment."""


def java_security(
    settings: config.Settings | None = None, relocated_to: str = "", *, password: bool = False
) -> dict[str, str]:
    """The same for Java clients (the Flink Kafka connector's `properties.*`): protocol, mechanism and JAAS line.

    The JAAS line holds `PASSWORD_PLACEHOLDER`, not the password, so that SQL built from it can be printed; the job
    passes each statement through `with_password` as it executes it. `password=True` puts the password in (for a
    file only its owner reads). `relocated_to` is the package prefix of a
    client that shades Kafka (flink-sql-connector-kafka does), since the JAAS line names the login module's class.
    """
    s = _security(settings)
    options = {"security.protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl.mechanism": s.kafka_sasl_mechanism,
            "sasl.jaas.config": f"{relocated_to}{SASL_MECHANISMS[s.kafka_sasl_mechanism]} required "
            f'username="{_jaas_quoted(s.kafka_sasl_username)}" '
            f'password="{_jaas_quoted(s.kafka_sasl_password) if password else PASSWORD_PLACEHOLDER}";',
        }
    return options


def with_password(sql: str, settings: config.Settings | None = None) -> str:
    """`sql` with `PASSWORD_PLACEHOLDER` replaced by the configured SASL password, quoted for the JAAS line and for
    the SQL string literal that holds it."""
    if PASSWORD_PLACEHOLDER not in sql:
        return sql
    password = _jaas_quoted(_security(settings).kafka_sasl_password).replace("'", "''")
    return sql.replace(PASSWORD_PLACEHOLDER, password)


def _jaas_quoted(value: str) -> str:
    """`value` inside a JAAS double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
