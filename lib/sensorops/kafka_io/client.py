"""What every Kafka client of the library shares: the brokers, how long to try, the errors that name the fix."""

from __future__ import annotations

import logging

from sensorops import config
from sensorops.errors import ServiceUnavailable, UserError

BOOTSTRAP_MS = 5_000
"""How long a client tries to reach Kafka before saying it is down."""


class MissingTopic(UserError):
    """The topic does not exist on the cluster."""

    def __init__(self, topic: str, servers: str) -> None:
        super().__init__(
            f"topic {topic!r} does not exist at {servers}; create it with `kafka_io.ensure_topic` "
            "(or start the stage that writes it)"
        )
        self.topic = topic


def bootstrap_servers(servers: str | None) -> str:
    """The given servers, or the configured `KAFKA_BOOTSTRAP_SERVERS`."""
    return servers or config.load().kafka_bootstrap_servers


def unreachable(servers: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"Kafka is not reachable at {servers} ({exc}). Start the platform with `make up`.")


def quiet_client_logs(level: int = logging.CRITICAL) -> None:
    """Raise kafka-python's log level (it logs every connection at INFO and slow loop turns at WARNING)."""
    logging.getLogger("kafka").setLevel(level)
