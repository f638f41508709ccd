"""Reading topics: the library's one Kafka consumer.

Every read assigns partitions itself (no consumer group, nothing committed), so reading never disturbs the stream
job's group or another reader. Where to begin is one argument, `start`: `"beginning"`, `"end"` (only what arrives
after the call), explicit offsets per partition, or, with `last`, about the last N records split evenly over the
partitions. Reads that begin in the past stop at the end the topic had when the read began; a read from the end
follows new records. Either way a read stops at `max_records` or after `timeout_s`, whichever comes first.

`committed_only` reads with `isolation_level=read_committed`: rows of exactly-once (transactional) sinks appear only
once the checkpoint that covers them completes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors

from sensorops.kafka_io.client import (
    MissingTopic,
    bootstrap_ms,
    bootstrap_servers,
    check_topic,
    client_security,
    unreachable,
)

Start = Literal["beginning", "end"] | Mapping[int, int]


@dataclass(frozen=True)
class Record:
    """One record as stored: where it is, when Kafka stamped it (epoch ms), its raw key and value."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@contextmanager
def consumer(
    topic: str,
    *,
    start: Start = "beginning",
    last: int | None = None,
    committed_only: bool = False,
    servers: str | None = None,
    **settings: Any,
) -> Iterator[tuple[KafkaConsumer, dict[TopicPartition, int]]]:
    """A consumer assigned to every partition of `topic` and positioned at `start` (see the module docstring).

    Yields it with the end offset of each partition at the moment it was positioned. Raises `MissingTopic` if the
    topic does not exist and `ServiceUnavailable` (naming `make up`) if Kafka does not answer.
    """
    servers = bootstrap_servers(servers)
    check_topic(topic)
    isolation = "read_committed" if committed_only else "read_uncommitted"
    try:
        kafka = KafkaConsumer(
            bootstrap_servers=servers,
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=bootstrap_ms(),
            isolation_level=isolation,
            **client_security(),
            **settings,
        )
    except kafka_errors.KafkaError as exc:
        raise unreachable(servers, exc) from exc
    try:
        partitions = sorted(kafka.partitions_for_topic(topic) or [])
        if not partitions:
            raise MissingTopic(topic, servers)
        tps = [TopicPartition(topic, p) for p in partitions]
        kafka.assign(tps)
        ends = kafka.end_offsets(tps)
        if start == "end":
            kafka.seek_to_end(*tps)
        elif start == "beginning":
            kafka.seek_to_beginning(*tps)
        else:
            for tp in tps:
                kafka.seek(tp, min(int(start.get(tp.partition, ends[tp])), ends[tp]))
        if last is not None:
            firsts = kafka.beginning_offsets(tps)
            share = -(-last // len(tps))
            for tp in tps:
                kafka.seek(tp, max(firsts[tp], ends[tp] - share))
        yield kafka, ends
    finally:
        kafka.close()


def records(
    topic: str,
    *,
    start: Start = "beginning",
    last: int | None = None,
    max_records: int = 100_000,
    timeout_s: float = 10.0,
    committed_only: bool = False,
    servers: str | None = None,
) -> Iterator[Record]:
    """The records of `topic` from `start`, as they are read (order holds within a partition, hence per key)."""
    follow = start == "end" and last is None
    with consumer(
        topic,
        start=start,
        last=last,
        committed_only=committed_only,
        servers=servers,
        max_poll_records=min(max(max_records, 1), 10_000),
    ) as (kafka, ends):
        deadline = time.monotonic() + timeout_s
        count = 0
        while count < max_records and (left := deadline - time.monotonic()) > 0:
            if not follow and all(kafka.position(tp) >= end for tp, end in ends.items()):
                return
            polled = kafka.poll(timeout_ms=int(min(left, 0.5) * 1000), max_records=max_records - count)
            for batch in polled.values():
                for r in batch:
                    yield Record(r.partition, r.offset, r.timestamp, r.key, r.value)
                    count += 1


def read(
    topic: str,
    *,
    start: Start = "beginning",
    last: int | None = None,
    max_records: int = 100_000,
    timeout_s: float = 10.0,
    committed_only: bool = False,
    decode: Callable[[bytes], Any] | None = orjson.loads,
    servers: str | None = None,
) -> list[Any]:
    """The values of `topic` from `start`, decoded as JSON unless `decode` is None (see `records`)."""
    found = records(
        topic,
        start=start,
        last=last,
        max_records=max_records,
        timeout_s=timeout_s,
        committed_only=committed_only,
        servers=servers,
    )
    if decode is None:
        return [r.value for r in found]
    return [None if r.value is None else decode(r.value) for r in found]


def end_offsets(topic: str, servers: str | None = None) -> dict[int, int]:
    """The end offset (the next offset to be written) of every partition of `topic`."""
    with consumer(topic, servers=servers) as (_, ends):
        return {tp.partition: offset for tp, offset in ends.items()}


def offsets_at(topic: str, epoch_ms: int, servers: str | None = None) -> dict[int, int]:
    """Per partition of `topic`, the first offset whose record was stamped at or after `epoch_ms` (the end offset
    where none was): `offsets_at(t, a)` to `offsets_at(t, b)` are the records written between a and b."""
    with consumer(topic, servers=servers) as (kafka, ends):
        found = kafka.offsets_for_times({tp: epoch_ms for tp in ends})
        return {tp.partition: (at.offset if at is not None else ends[tp]) for tp, at in found.items()}
