"""The pipeline's own Prometheus exporter: what Flink's reporter and Kafka's JMX agent do not say.

`sensorops monitor exporter` (run by supervisor on the local platform) reads every source of `sources` each
`interval_s` and serves the newest complete reading at `/metrics`: a scrape never waits on Kafka, MLflow or Airflow
and never sees half a refresh. A source that fails serves nothing for its metrics and reports
`sensorops_exporter_source_up{source} 0`; the others go on.

Measured on the idle platform: about 275 MiB resident, most of it MLflow, scikit-learn and pandas, which come with
`registry` (reused, so that "which version is the champion" is decided in one place); a refresh of all four sources
takes under a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from sensorops.monitoring import sources
from sensorops.monitoring.sources import Sample

log = logging.getLogger(__name__)

Source = Callable[[], list[Sample]]
SOURCES: dict[str, Source] = {
    "kafka": sources.consumer_lag,
    "registry": sources.model_registry,
    "live_quality": sources.live_quality,
    "airflow": sources.airflow_runs,
}
SELF_HELP = {
    "sensorops_exporter_source_up": "1 if the source answered at the last refresh.",
    "sensorops_exporter_source_seconds": "How long the last refresh of the source took.",
}
MLFLOW_FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
"""MLflow's client retries for minutes by default; the exporter would rather report the registry down."""


def families(samples: Iterable[Sample], help_texts: Mapping[str, str]) -> list[Metric]:
    """Samples grouped into gauge families, one per name (every sample of a name has the same label names)."""
    grouped: dict[str, list[Sample]] = {}
    for s in samples:
        grouped.setdefault(s.name, []).append(s)
    result = []
    for name, group in grouped.items():
        family = GaugeMetricFamily(name, help_texts[name], labels=list(group[0].labels))
        for s in group:
            family.add_metric(list(s.labels.values()), s.value)
        result.append(family)
    return result


class Snapshot:
    """A prometheus_client collector serving the newest complete refresh."""

    def __init__(self) -> None:
        self._metrics: list[Metric] = []
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            yield from self._metrics

    def replace(self, metrics: list[Metric]) -> None:
        with self._lock:
            self._metrics = metrics


def refresh(readers: Mapping[str, Source], was_up: dict[str, bool]) -> list[Metric]:
    """Read every source once; a failure is logged when the source goes down, not on every refresh."""
    samples: list[Sample] = []
    for name, read in readers.items():
        started = time.monotonic()
        try:
            samples += read()
            up = True
        except Exception as exc:  # any failure of a source only blanks its own metrics
            up = False
            if was_up.get(name, True):
                log.warning("source %s failed: %s: %s", name, type(exc).__name__, exc)
        if up and not was_up.get(name, True):
            log.info("source %s answers again", name)
        was_up[name] = up
        samples.append(Sample("sensorops_exporter_source_up", {"source": name}, float(up)))
        samples.append(Sample("sensorops_exporter_source_seconds", {"source": name}, time.monotonic() - started))
    return families(samples, {**sources.HELP, **SELF_HELP})


def serve(
    port: int,
    host: str = "127.0.0.1",
    interval_s: float = 15.0,
    readers: Mapping[str, Source] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Serve `/metrics` on host:port and refresh every `interval_s` until `stop` is set (or forever)."""
    for key, value in MLFLOW_FAIL_FAST.items():
        os.environ.setdefault(key, value)
    readers = readers or SOURCES
    stop = stop or threading.Event()
    snapshot, was_up = Snapshot(), {}
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(snapshot)
    ProcessCollector(registry=metrics)  # the exporter's own memory and CPU
    server, _ = start_http_server(port, addr=host, registry=metrics)
    log.info("serving metrics at http://%s:%d/metrics, refreshed every %.0f s", host, port, interval_s)
    try:
        while True:
            snapshot.replace(refresh(readers, was_up))
            if stop.wait(interval_s):
                return
    finally:
        server.shutdown()
