"""Topics: create if missing, delete, and wait until the cluster reports them."""

from __future__ import annotations

import logging

from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient, NewTopic

from sensorops.errors import ServiceUnavailable
from sensorops.kafka_io.client import bootstrap_ms, bootstrap_servers, check_topic, client_security, unreachable
from sensorops.waiting import TimedOut, wait_until

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


def admin_client(servers: str) -> KafkaAdminClient:
    """An admin client of `servers`; the error names the fix if it cannot reach them."""
    try:
        return KafkaAdminClient(
            bootstrap_servers=servers,
            request_timeout_ms=10_000,
            bootstrap_timeout_ms=bootstrap_ms(),
            **client_security(),
        )
    except kafka_errors.KafkaError as exc:
        raise unreachable(servers, exc) from exc


def ensure_topic(
    topic: str, partitions: int = DEFAULT_PARTITIONS, servers: str | None = None, replication_factor: int = 1
) -> int:
    """Create `topic` if it does not exist; return its partition count (the existing one if it was there)."""
    servers = bootstrap_servers(servers)
    check_topic(topic)
    admin = admin_client(servers)
    try:
        try:
            admin.create_topics([NewTopic(topic, partitions, replication_factor)], timeout_ms=10_000)
            log.info("created topic %s with %d partitions", topic, partitions)
        except kafka_errors.TopicAlreadyExistsError:
            pass

        def reported() -> int:  # metadata of a new topic takes a moment to propagate
            described = admin.describe_topics([topic])
            return len(described[0].get("partitions") or []) if described else 0

        try:
            return wait_until(reported, timeout=5, interval=0.1)
        except TimedOut:
            raise ServiceUnavailable(f"Kafka at {servers} did not report partitions for topic {topic!r}") from None
    finally:
        admin.close()


def delete_topic(topic: str, servers: str | None = None) -> None:
    """Delete `topic` if it exists (for tests and notebook cleanup)."""
    admin = admin_client(bootstrap_servers(servers))
    try:
        admin.delete_topics([topic], timeout_ms=10_000)
    except kafka_errors.UnknownTopicOrPartitionError:
        pass
    finally:
        admin.close()


def committed_offsets(group: str, topic: str, servers: str | None = None) -> dict[int, int]:
    """The offsets consumer group `group` has committed on each partition of `topic` (absent: none yet)."""
    admin = admin_client(bootstrap_servers(servers))
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})
    except kafka_errors.KafkaError as exc:
        raise unreachable(bootstrap_servers(servers), exc) from exc
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}
