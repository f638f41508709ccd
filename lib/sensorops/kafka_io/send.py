"""`produce`: events to a topic from one process, or from several, each with its own producer.

With ``workers=N`` the partitions are spread over N processes (spawned, so safe from a notebook with threads), and a
partition belongs to one worker, so per-key order holds. Where the events come from decides who does the work:
- events handed to `produce` (DataFrames, serialised batches): the parent splits each batch by owner and hands the
  parts over a pipe, and the workers serialise and send them;
- a `source`, a picklable callable that yields DataFrames (a `functools.partial` of a module-level function): every
  worker calls it, keeps the rows it owns, serialises and sends them. Nothing passes through the parent, whose
  splitting and handing over was most of its time (8-9 s of 12 s), and the source (the generator) runs in each
  worker, so it must yield the same rows each time it is called.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import wait
from typing import Any

import numpy as np
import pandas as pd
from kafka import errors as kafka_errors
from kafka.partitioner.default import murmur2

from sensorops.errors import UserError
from sensorops.events import serialize
from sensorops.kafka_io.admin import DEFAULT_PARTITIONS, ensure_topic
from sensorops.kafka_io.client import bootstrap_servers
from sensorops.kafka_io.producer import Batch, DeliveryError, EventProducer, ProduceReport, producer_settings

Source = Callable[[], Iterable[pd.DataFrame]]
"""Events that each worker process generates for itself (`produce(source=...)`)."""


def produce(
    events: pd.DataFrame | Batch | Iterable[pd.DataFrame] | Iterable[Batch] | None,
    topic: str,
    servers: str | None = None,
    *,
    source: Source | None = None,
    workers: int = 1,
    partitions: int = DEFAULT_PARTITIONS,
    progress: Callable[[int], None] | None = None,
    raise_on_failure: bool = True,
    **overrides: Any,
) -> ProduceReport:
    """Send events (a DataFrame, serialised keys and values, or an iterable of either; or what `source` yields, in
    every worker) to `topic`, keyed by sensor.

    Creates the topic if missing. `progress` is called with the number of events handed over per batch.
    Raises :class:`DeliveryError` (with the report attached) if any event was not acknowledged.
    """
    if workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    if (events is None) == (source is None):
        raise UserError("give produce() either events or a source, not both")
    servers = bootstrap_servers(servers)
    n_partitions = ensure_topic(topic, partitions, servers)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if workers == 1:
        producer = EventProducer(topic, servers, **overrides)
        try:
            for keys, values in _as_batches(source() if source else events, timings):
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
        with _Workers(topic, servers, workers, n_partitions, overrides, source) as pool:
            report = pool.run(events, timings, progress)
    report.seconds = time.perf_counter() - started
    report.timings = timings
    if raise_on_failure and not report.ok:
        raise DeliveryError(report, servers, producer_settings(**overrides)["delivery_timeout_ms"] / 1000)
    return report


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


class _Owners:
    """Which worker owns a key: the one its partition (Kafka's murmur2) is given to, cached per key."""

    def __init__(self, n_partitions: int, workers: int) -> None:
        self.n_partitions, self.workers = n_partitions, workers
        self._cache: dict[bytes, int] = {}

    def of(self, key: bytes) -> int:
        w = self._cache.get(key)
        if w is None:
            w = self._cache[key] = ((murmur2(key) & 0x7FFFFFFF) % self.n_partitions) % self.workers
        return w

    def of_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """The owner of each row of a DataFrame of events, by its sensor id."""
        sensors = pd.Categorical(frame["sensor_id"])
        of_category = np.array([self.of(str(c).encode()) for c in sensors.categories], dtype=np.int64)
        return of_category[sensors.codes]

    def split(self, batch: Batch | pd.DataFrame) -> list[Any]:
        if isinstance(batch, pd.DataFrame):
            mine = self.of_rows(batch)
            return [batch[mine == w] for w in range(self.workers)]
        parts: list[Batch] = [([], []) for _ in range(self.workers)]
        for k, v in zip(*batch):
            ks, vs = parts[self.of(k)]
            ks.append(k)
            vs.append(v)
        return parts


def _worker(conn: Any, topic: str, servers: str, overrides: dict[str, Any], share: tuple | None) -> None:
    """A producer process. Without a `share`, it sends the batches it receives (serialised, or DataFrames to
    serialise) until None; with one, `(source, owners, index)`, it waits for the parent's go, then sends its own rows
    of what `source` yields and reports ("progress", n) as it goes. Either way it ends by sending back its report,
    whose `timings` hold its seconds per step."""
    try:
        producer = EventProducer(topic, servers, **overrides)
    except Exception as exc:
        conn.send(exc)
        return
    conn.send("ready")
    if share is not None:
        conn.recv()  # the parent's go, once every worker is ready: they start together
    failed = False
    timings = {"source": 0.0, "serialize": 0.0, "client": 0.0}
    for batch in _received(conn) if share is None else _own_share(*share, timings):
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
        if share is not None:
            conn.send(("progress", len(batch[0])))
    t0 = time.perf_counter()
    report = producer.close()
    timings["client"] += time.perf_counter() - t0
    report.timings = timings
    conn.send(report)


def _received(conn: Any) -> Iterator[Any]:
    while (batch := conn.recv()) is not None:
        yield batch


def _own_share(source: Source, owners: _Owners, index: int, timings: dict[str, float]) -> Iterator[pd.DataFrame]:
    for frame in _as_batches(source(), timings, serialise=False):
        t0 = time.perf_counter()
        mine = frame[owners.of_rows(frame) == index]  # type: ignore[arg-type]
        timings["source"] += time.perf_counter() - t0
        if len(mine):
            yield mine


class _Workers:
    """`workers` producer processes on the partitions of `topic`, each with its own producer."""

    def __init__(
        self,
        topic: str,
        servers: str,
        workers: int,
        n_partitions: int,
        overrides: dict[str, Any],
        source: Source | None,
    ) -> None:
        self.owners = _Owners(n_partitions, workers)
        self.source = source
        ctx = mp.get_context("spawn")
        self.pipes, self.procs = [], []
        for index in range(workers):
            share = None if source is None else (source, self.owners, index)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, topic, servers, overrides, share), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        self.report = ProduceReport(topic=topic)

    def __enter__(self) -> _Workers:
        for conn in self.pipes:
            try:
                hello = conn.recv()
            except EOFError:
                raise UserError("a producer worker process died on start; run with workers=1 to see why") from None
            if isinstance(hello, Exception):
                raise hello
        if self.source is not None:
            for conn in self.pipes:
                conn.send("go")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()

    def run(self, events: Any, timings: dict[str, float], progress: Callable[[int], None] | None) -> ProduceReport:
        """Hand `events` over (or, with a source, wait while the workers generate), then collect their reports."""
        if self.source is None:
            for batch in _as_batches(events, timings, serialise=False):  # DataFrames are serialised in the workers
                t0 = time.perf_counter()
                parts = self.owners.split(batch)
                for conn, part in zip(self.pipes, parts):
                    if len(part[0] if isinstance(part, tuple) else part):
                        conn.send(part)
                timings["split and hand over"] = timings.get("split and hand over", 0.0) + time.perf_counter() - t0
                if progress:
                    progress(sum(len(p[0] if isinstance(p, tuple) else p) for p in parts))
            for conn in self.pipes:
                conn.send(None)
        t0 = time.perf_counter()
        waiting = list(self.pipes)
        while waiting:
            for conn in wait(waiting):
                message = conn.recv()
                if isinstance(message, ProduceReport):
                    self.report.merge(message)
                    for k, v in message.timings.items():
                        timings[f"workers {k}"] = timings.get(f"workers {k}", 0.0) + v
                    waiting.remove(conn)
                elif progress:
                    progress(message[1])
        timings["wait for workers"] = time.perf_counter() - t0
        return self.report
