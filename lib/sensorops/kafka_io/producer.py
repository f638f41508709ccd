"""The producer: durable, partitioned by key, every record's delivery tracked into a report.

The producer is kafka-python's, configured for durability first (``acks=all``, idempotence, unlimited retries within
a delivery timeout) and then for throughput (compression, large batches, a short linger). Each record's partition is
computed once per key with the same murmur2 hash as Kafka's default partitioner, so a sensor's events always land in
one partition, in order.

kafka-python spends about 15 µs of Python per ``send`` (with the garbage collector paused during the send loop;
twice that without); to go further, :func:`produce` can spread the partitions over several worker processes
(``workers=2``), each with its own producer and serialising its own share. A partition belongs to one
worker, so per-key order still holds.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from kafka import KafkaProducer
from kafka import codec as kafka_codec
from kafka import errors as kafka_errors
from kafka.partitioner.default import murmur2

from sensorops.errors import UserError
from sensorops.events import serialize
from sensorops.kafka_io.admin import DEFAULT_PARTITIONS, ensure_topic
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


def _as_batches(events: Any, timings: dict[str, float], serialise: bool = True) -> Iterator[Batch | pd.DataFrame]:
    """Normalise what `produce` accepts into batches, timing generation (and serialisation, if `serialise`)."""
    if isinstance(events, pd.DataFrame):
        events = [events]
    elif isinstance(events, tuple) and len(events) == 2 and isinstance(events[0], list):
        events = [events]
    it = iter(events)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        t1 = time.perf_counter()
        timings["source"] = timings.get("source", 0.0) + t1 - t0
        if serialise and isinstance(item, pd.DataFrame):
            item = serialize(item)
            timings["serialize"] = timings.get("serialize", 0.0) + time.perf_counter() - t1
        yield item


def _split(batch: Batch, owner: Callable[[bytes], int], n: int) -> list[Batch]:
    parts: list[Batch] = [([], []) for _ in range(n)]
    for k, v in zip(*batch):
        ks, vs = parts[owner(k)]
        ks.append(k)
        vs.append(v)
    return parts


def _worker(conn: Any, topic: str, servers: str, overrides: dict[str, Any]) -> None:
    """A producer process: receive batches (serialised, or DataFrames to serialise) until None, then send back its
    report, whose `timings` hold this worker's serialisation and client seconds."""
    try:
        producer = EventProducer(topic, servers, **overrides)
    except Exception as exc:
        conn.send(exc)
        return
    conn.send("ready")
    failed = False
    timings = {"serialize": 0.0, "client": 0.0}
    while (batch := conn.recv()) is not None:
        if failed:  # keep draining so the parent never blocks; these events count as not delivered
            producer.skip(len(batch[0]) if isinstance(batch, tuple) else len(batch))
            continue
        t0 = time.perf_counter()
        if isinstance(batch, pd.DataFrame):
            batch = serialize(batch)
        t1 = time.perf_counter()
        try:
            producer.send_batch(*batch)
        except kafka_errors.KafkaError:
            failed = True  # already in the report
        timings["serialize"] += t1 - t0
        timings["client"] += time.perf_counter() - t1
    t0 = time.perf_counter()
    report = producer.close()
    timings["client"] += time.perf_counter() - t0
    report.timings = timings
    conn.send(report)


def produce(
    events: pd.DataFrame | Batch | Iterable[pd.DataFrame] | Iterable[Batch],
    topic: str,
    servers: str | None = None,
    *,
    workers: int = 1,
    partitions: int = DEFAULT_PARTITIONS,
    progress: Callable[[int], None] | None = None,
    raise_on_failure: bool = True,
    **overrides: Any,
) -> ProduceReport:
    """Send events (a DataFrame, serialised keys and values, or an iterable of either) to `topic`, keyed by sensor.

    Creates the topic if missing. `progress` is called with the number of events handed over per batch.
    Raises :class:`DeliveryError` (with the report attached) if any event was not acknowledged.
    """
    if workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    servers = bootstrap_servers(servers)
    n_partitions = ensure_topic(topic, partitions, servers)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if workers == 1:
        producer = EventProducer(topic, servers, **overrides)
        try:
            for keys, values in _as_batches(events, timings):
                t0 = time.perf_counter()
                producer.send_batch(keys, values)
                timings["client"] = timings.get("client", 0.0) + time.perf_counter() - t0
                if progress:
                    progress(len(keys))
        except kafka_errors.KafkaError:
            pass  # counted in the report below
        t0 = time.perf_counter()
        report = producer.close()
        timings["client"] = timings.get("client", 0.0) + time.perf_counter() - t0
    else:
        report = _produce_parallel(events, topic, servers, workers, n_partitions, timings, progress, overrides)
    report.seconds = time.perf_counter() - started
    report.timings = timings
    log.debug("%s", report)
    if raise_on_failure and not report.ok:
        raise DeliveryError(report, servers, producer_settings(**overrides)["delivery_timeout_ms"] / 1000)
    return report


def _produce_parallel(
    events: Any,
    topic: str,
    servers: str,
    workers: int,
    n_partitions: int,
    timings: dict[str, float],
    progress: Callable[[int], None] | None,
    overrides: dict[str, Any],
) -> ProduceReport:
    """Spread partitions over `workers` processes (spawned, so safe from a notebook with threads)."""
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for _ in range(workers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, topic, servers, overrides), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    try:
        for conn in pipes:
            try:
                hello = conn.recv()
            except EOFError:
                raise UserError("a producer worker process died on start; run with workers=1 to see why") from None
            if isinstance(hello, Exception):
                raise hello
        cache: dict[bytes, int] = {}

        def owner(key: bytes) -> int:
            w = cache.get(key)
            if w is None:
                w = cache[key] = ((murmur2(key) & 0x7FFFFFFF) % n_partitions) % workers
            return w

        # DataFrames are split by owner here and serialised in the workers, in parallel.
        for batch in _as_batches(events, timings, serialise=False):
            t0 = time.perf_counter()
            if isinstance(batch, pd.DataFrame):
                sensors = pd.Categorical(batch["sensor_id"])
                of_category = np.array([owner(str(c).encode()) for c in sensors.categories], dtype=np.int64)
                mine = of_category[sensors.codes]
                parts: list[Any] = [batch[mine == w] for w in range(workers)]
                size = len(batch)
            else:
                parts = _split(batch, owner, workers)
                size = len(batch[0])
            for conn, part in zip(pipes, parts):
                if len(part[0] if isinstance(part, tuple) else part):
                    conn.send(part)
            timings["split and hand over"] = timings.get("split and hand over", 0.0) + time.perf_counter() - t0
            if progress:
                progress(size)
        t0 = time.perf_counter()
        report = ProduceReport(topic=topic)
        for conn in pipes:
            conn.send(None)
        for conn in pipes:
            part_report = conn.recv()
            report.merge(part_report)
            for k, v in part_report.timings.items():
                timings[f"workers {k}"] = timings.get(f"workers {k}", 0.0) + v
        timings["wait for workers"] = time.perf_counter() - t0
        return report
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
