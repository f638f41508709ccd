"""The producer: durable, partitioned by key, every record's delivery tracked into a report.

The producer is kafka-python's, configured for durability first (``acks=all``, idempotence, unlimited retries within
a delivery timeout) and then for throughput (compression, large batches, a short linger). Each record's partition is
computed once per key with the same murmur2 hash as Kafka's default partitioner, so a sensor's events always land in
one partition, in order.

kafka-python spends about 15 µs of Python per ``send`` (with the garbage collector paused during the send loop;
twice that without); to go further, `send.produce` spreads the partitions over several worker processes, each with
its own producer.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka import codec as kafka_codec
from kafka import errors as kafka_errors
from kafka.partitioner.default import murmur2

from sensorops.errors import UserError
from sensorops.kafka_io.client import bootstrap_ms, bootstrap_servers, check_topic, client_security, unreachable

log = logging.getLogger(__name__)

Batch = tuple[list[bytes], list[bytes]]
"""Keys and values, already serialised."""


def best_compression() -> str:
    """The fastest codec kafka-python can use here: lz4 or zstd if their packages are installed, else gzip."""
    if kafka_codec.has_lz4():
        return "lz4"
    if kafka_codec.has_zstd():
        return "zstd"
    return "gzip"


def producer_settings(**overrides: Any) -> dict[str, Any]:
    """KafkaProducer keyword arguments: durable (acks=all, idempotent) and tuned for throughput."""
    settings: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,  # the default in kafka-python 3; explicit so a conflicting setting raises
        "compression_type": best_compression(),
        "linger_ms": 10,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "delivery_timeout_ms": 30_000,  # retries (with backoff) stop after this; then the record counts as failed
        "request_timeout_ms": 10_000,
        "retry_backoff_ms": 200,
        "reconnect_backoff_ms": 100,
        "reconnect_backoff_max_ms": 2_000,
        "max_block_ms": 20_000,
        "bootstrap_timeout_ms": bootstrap_ms(),
        "metrics_enabled": False,  # per-record metrics cost ~5 % of the send path
        **client_security(),
    }
    settings.update(overrides)
    return settings


@dataclass
class ProduceReport:
    """What happened to the events handed to the producer. `failed` counts every event not acknowledged."""

    topic: str
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per step: ``source`` (generating, or waiting for real time), ``serialize``, ``client`` (kafka-python and
    the wait for acks). With workers: ``split and hand over`` in the parent (it waits when the workers are busy), and
    ``workers serialize``/``workers client`` summed over the worker processes (CPU-seconds in parallel, so they can
    exceed the wall time)."""

    @property
    def events_per_s(self) -> float:
        return self.acknowledged / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.acknowledged == self.sent

    def merge(self, other: ProduceReport) -> None:
        """Add another (worker's) counts into this report; time is not added (workers run in parallel)."""
        self.sent += other.sent
        self.acknowledged += other.acknowledged
        self.failed += other.failed
        self.errors.extend(e for e in other.errors if e not in self.errors)

    def __str__(self) -> str:
        line = (
            f"{self.acknowledged:,} of {self.sent:,} events acknowledged by topic {self.topic!r} "
            f"in {self.seconds:.2f} s ({self.events_per_s:,.0f} events/s)"
        )
        if self.failed:
            line += f"; {self.failed:,} NOT delivered"
        return line

    def _repr_html_(self) -> str:
        rows = {
            "topic": self.topic,
            "sent": f"{self.sent:,}",
            "acknowledged": f"{self.acknowledged:,}",
            "failed": f"{self.failed:,}",
            "seconds": f"{self.seconds:.2f}",
            "events/s": f"{self.events_per_s:,.0f}",
        }
        rows.update({f"time in {k} (s)": f"{v:.2f}" for k, v in self.timings.items()})
        if self.errors:
            rows["first error"] = self.errors[0]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in rows.items())
        return f"<table>{body}</table>"


class DeliveryError(UserError):
    """Some events were not acknowledged; `report` says how many."""

    def __init__(self, report: ProduceReport, servers: str, timeout_s: float) -> None:
        self.report = report
        reason = f": {report.errors[0]}" if report.errors else ""
        super().__init__(
            f"{report.failed:,} of {report.sent:,} events were NOT delivered to topic {report.topic!r} at {servers} "
            f"(retried with backoff for up to {timeout_s:g} s){reason}. "
            "Check that Kafka is up (`sensorops platform status`)."
        )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around the send loop.

    Each record allocates a few container objects (its future, callbacks), so the collector would run every few
    hundred records and rescan everything still in flight: about a quarter of the client's time, measured. Reference
    counting still frees memory as usual; cycles are collected as soon as the loop ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class EventProducer:
    """A KafkaProducer that partitions by key, tracks every record's delivery and ends with a :class:`ProduceReport`."""

    def __init__(self, topic: str, servers: str | None = None, **overrides: Any) -> None:
        self.topic = check_topic(topic)
        self.servers = bootstrap_servers(servers)
        self.settings = producer_settings(**overrides)
        try:
            self._producer = KafkaProducer(bootstrap_servers=self.servers, **self.settings)
            partitions = self._producer.partitions_for(topic)
        except kafka_errors.KafkaError as exc:
            raise unreachable(self.servers, exc) from exc
        if not partitions:
            raise UserError(f"topic {topic!r} has no partitions at {self.servers}; create it with `ensure_topic`")
        self.n_partitions = len(partitions)
        self._partition_of: dict[bytes, int] = {}
        self._pending: list[Any] = []
        self._acked = self._nacked = self._unsent = 0
        self.report = ProduceReport(topic=topic)
        self._started = time.perf_counter()

    def partition(self, key: bytes) -> int:
        """The partition Kafka's default partitioner gives `key` (murmur2), cached per key."""
        p = self._partition_of.get(key)
        if p is None:
            p = self._partition_of[key] = (murmur2(key) & 0x7FFFFFFF) % self.n_partitions
        return p

    def send_batch(self, keys: list[bytes], values: list[bytes]) -> None:
        """Hand a batch of records to the client (asynchronously); records keep their order per key.

        If the client refuses a record (no metadata within `max_block_ms`), the rest of the batch counts as failed
        and the error is raised.
        """
        send, topic, parts = self._producer.send, self.topic, self._partition_of
        for k in set(keys).difference(parts):
            self.partition(k)
        futures = self._pending
        before = len(futures)
        try:
            with _gc_paused():
                for k, v in zip(keys, values):  # the hot loop: ~20 us a record inside kafka-python
                    futures.append(send(topic, v, k, None, parts[k]))
        except kafka_errors.KafkaError as exc:
            self._error(exc)
            unsent = len(keys) - (len(futures) - before)
            self._unsent += unsent
            log.error("send failed; %d events of this batch not sent: %s", unsent, exc)
            raise
        finally:
            self._sweep(final=False)

    def skip(self, n: int) -> None:
        """Count `n` events that will not be sent (after an error) as failed."""
        self._unsent += n
        self._sweep(final=False)

    def _error(self, exc: BaseException | None) -> None:
        name, text = type(exc).__name__, str(exc)
        msg = text if text.startswith(name) else f"{name}: {text}"
        if msg not in self.report.errors and len(self.report.errors) < 5:
            self.report.errors.append(msg)

    def _sweep(self, final: bool) -> None:
        """Count finished records; keep the ones still in flight (or, if `final`, count them as failed)."""
        still = []
        for f in self._pending:
            if f.is_done:
                if f.succeeded():
                    self._acked += 1
                else:
                    self._nacked += 1
                    self._error(f.exception)
            elif final:
                self._nacked += 1
            else:
                still.append(f)
        self._pending = still
        r = self.report
        r.acknowledged = self._acked
        r.failed = self._nacked + self._unsent
        r.sent = r.acknowledged + r.failed + len(still)
        if final and r.failed and not r.errors:
            r.errors.append("not acknowledged before the delivery timeout")

    def close(self, timeout_s: float | None = None) -> ProduceReport:
        """Wait for outstanding acknowledgements (at most `timeout_s`), close the client, return the report.

        By default waits a little longer than the delivery timeout, after which every record has either been
        acknowledged or failed.
        """
        if timeout_s is None:
            timeout_s = self.settings["delivery_timeout_ms"] / 1000 + 15
        try:
            self._producer.flush(timeout=timeout_s)
            flushed = True
        except kafka_errors.KafkaError as exc:
            self._error(exc)
            flushed = False
        self._sweep(final=True)
        try:
            self._producer.close(timeout=5 if flushed else 0)
        except kafka_errors.KafkaError:
            sender = getattr(self._producer, "_sender", None)  # flush timed out: stop the I/O thread anyway
            if sender is not None:
                sender.force_close()
        self.report.seconds = time.perf_counter() - self._started
        return self.report
