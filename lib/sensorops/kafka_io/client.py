"""What every Kafka client of the library shares: the brokers, how long to try, the errors that name the fix."""

from __future__ import annotations

import logging
import os
import re

from sensorops import config
from sensorops.errors import ServiceUnavailable, UserError

BOOTSTRAP_MS = 5_000
"""How long a client tries to reach Kafka before saying it is down (`SENSOROPS_KAFKA_BOOTSTRAP_MS` overrides it)."""

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


def unreachable(servers: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"Kafka is not reachable at {servers} ({exc}). Start the platform with `make up`.")


def quiet_client_logs(level: int = logging.CRITICAL) -> None:
    """Raise kafka-python's log level (it logs every connection at INFO and slow loop turns at WARNING)."""
    logging.getLogger("kafka").setLevel(level)
