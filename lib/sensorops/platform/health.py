"""One check per service, through the protocol the pipeline uses: Kafka metadata, an S3 listing with the configured
keys, Flink's REST overview, MLflow's and Airflow's health endpoints, Prometheus' readiness and its targets."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from sensorops import config
from sensorops.errors import ServiceUnavailable
from sensorops.platform.layout import PORTS

log = logging.getLogger(__name__)

SERVICES = ("kafka", "s3", "flink", "mlflow", "airflow", "prometheus")
PURPOSE = {
    "kafka": "the event log: sensors publish here and every stage reads from here",
    "s3": "object storage: the Parquet archive, MLflow's artifacts and Flink's checkpoints",
    "flink": "the stream processor: computes features and windows from Kafka in real time",
    "mlflow": "experiment tracking and the model registry",
    "airflow": "the orchestrator: runs the whole pipeline as a DAG",
    "prometheus": "metrics and alert rules: scrapes Flink, Kafka and the pipeline's own exporter",
}


@dataclass(frozen=True)
class Health:
    service: str
    ok: bool
    url: str
    version: str = ""
    detail: str = ""

    @property
    def purpose(self) -> str:
        return PURPOSE[self.service]


def address(service: str, settings: config.Settings) -> str:
    """Where a service is expected, as a user would type it."""
    return {
        "kafka": settings.kafka_bootstrap_servers,
        "s3": settings.aws_endpoint_url,
        "flink": settings.flink_rest_url,
        "mlflow": settings.mlflow_tracking_uri,
        "airflow": settings.airflow_api_url,
        "prometheus": prometheus_url(),
    }[service]


def prometheus_url() -> str:
    """Where Prometheus answers: `PROMETHEUS_URL`, else the local platform's."""
    return os.environ.get("PROMETHEUS_URL", f"http://127.0.0.1:{PORTS['prometheus']}").rstrip("/")


def dashboard_url() -> str:
    """Where the dashboard (`sensorops monitor dashboard`) answers: `DASHBOARD_URL`, else the local platform's."""
    return os.environ.get("DASHBOARD_URL", f"http://127.0.0.1:{PORTS['dashboard']}").rstrip("/")


def _port_open(url: str, timeout: float) -> bool:
    """A TCP connect first, so that a stopped service fails in milliseconds rather than after client retries."""
    hostport = url.split(",")[0]
    parts = urlsplit(hostport if "://" in hostport else f"tcp://{hostport}")
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def _kafka(s: config.Settings, timeout: float) -> tuple[str, str]:
    from kafka import KafkaAdminClient

    from sensorops.kafka_io.client import client_security

    admin = KafkaAdminClient(
        bootstrap_servers=s.kafka_bootstrap_servers,
        request_timeout_ms=int(timeout * 1000),
        client_id="sensorops-health",
        **client_security(s),
    )
    try:
        cluster = admin.describe_cluster()
        api = ".".join(map(str, admin._client.check_version()))  # the newest protocol both sides speak
        return f"API {api}", f"cluster {cluster['cluster_id']}, {len(cluster['brokers'])} broker(s)"
    finally:
        admin.close()


def _s3(s: config.Settings, timeout: float) -> tuple[str, str]:
    from sensorops import storage

    client = storage.client(s, timeout=timeout)
    buckets = [b.name for b in client.list_buckets()]
    server = storage.server_header(s, timeout=timeout)
    return server, f"buckets: {', '.join(buckets) or 'none'}"


def _flink(s: config.Settings, timeout: float) -> tuple[str, str]:
    overview = requests.get(f"{s.flink_rest_url}/overview", timeout=timeout)
    overview.raise_for_status()
    o = overview.json()
    return o["flink-version"], (
        f"{o['taskmanagers']} TaskManager(s), {o['slots-available']}/{o['slots-total']} slots free, "
        f"{o['jobs-running']} job(s) running"
    )


def _mlflow(s: config.Settings, timeout: float) -> tuple[str, str]:
    base = s.mlflow_tracking_uri.rstrip("/")
    requests.get(f"{base}/health", timeout=timeout).raise_for_status()
    version = requests.get(f"{base}/version", timeout=timeout)
    version.raise_for_status()
    return version.text.strip(), "tracking server and model registry"


def _airflow(s: config.Settings, timeout: float) -> tuple[str, str]:
    health = requests.get(f"{s.airflow_api_url}/api/v2/monitor/health", timeout=timeout)
    health.raise_for_status()
    h = health.json()
    unhealthy = [name for name, part in h.items() if isinstance(part, dict) and part.get("status") != "healthy"]
    if unhealthy:
        raise RuntimeError(f"unhealthy: {', '.join(unhealthy)}")
    version = requests.get(f"{s.airflow_api_url}/api/v2/version", timeout=timeout)
    return (version.json().get("version", "") if version.ok else ""), "API server, scheduler, DAG processor"


def _prometheus(s: config.Settings, timeout: float) -> tuple[str, str]:
    base = prometheus_url()
    requests.get(f"{base}/-/ready", timeout=timeout).raise_for_status()
    build = requests.get(f"{base}/api/v1/status/buildinfo", timeout=timeout).json()["data"]
    targets = requests.get(f"{base}/api/v1/targets", params={"state": "active"}, timeout=timeout).json()
    health = [(t["labels"]["job"], t["health"]) for t in targets["data"]["activeTargets"]]
    waiting = sorted({job for job, state in health if state != "up"})
    up = f"{len(health) - len(waiting)}/{len(health)} targets up"
    return build["version"], up + (f" (not up: {', '.join(waiting)})" if waiting else "")


CHECKS: dict[str, Callable[[config.Settings, float], tuple[str, str]]] = {
    "kafka": _kafka,
    "s3": _s3,
    "flink": _flink,
    "mlflow": _mlflow,
    "airflow": _airflow,
    "prometheus": _prometheus,
}


def check(service: str, settings: config.Settings | None = None, timeout: float = 3.0) -> Health:
    """Whether one service answers its protocol; never raises for a service that is down."""
    if service not in CHECKS:
        raise ValueError(f"unknown service {service!r}; choose from {', '.join(SERVICES)}")
    s = settings or config.load()
    url = address(service, s)
    if not _port_open(url, timeout):
        return Health(service, False, url, detail="nothing is listening")
    try:
        version, detail = CHECKS[service](s, timeout)
    except Exception as exc:  # any failure of the protocol means "down", with the reason
        log.debug("health check of %s failed", service, exc_info=True)
        return Health(service, False, url, detail=f"{type(exc).__name__}: {exc}")
    return Health(service, True, url, version, detail)


def require(*services: str, timeout: float = 3.0) -> dict[str, Health]:
    """Check services (all by default) and raise `ServiceUnavailable` naming each one that is down."""
    results = {name: check(name, timeout=timeout) for name in (services or SERVICES)}
    down = [h for h in results.values() if not h.ok]
    if down:
        lines = [f"{_title(h.service)} is not reachable at {h.url} ({h.detail})." for h in down]
        raise ServiceUnavailable(" ".join(lines) + " Start the platform with `make up`.")
    return results


def _title(service: str) -> str:
    return {"s3": "S3", "mlflow": "MLflow"}.get(service, service.capitalize())
