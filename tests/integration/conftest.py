"""Integration tests run against the live platform that `make up` starts; they fail (never skip) when it is down."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaProducer
from mlflow import MlflowClient

from sensorops import config, flink, generator, kafka_io, stream
from sensorops.platform import require

DEAD_LETTERS = (b"not json", b'{"sensor_id": "s"}', b"\xff\xfe{")
"""What `stream_job` writes after its readings: not JSON, not an event, not UTF-8."""


@pytest.fixture(scope="session")
def settings() -> config.Settings:
    require()  # raises ServiceUnavailable naming what is down and "run `make up`"
    return config.load()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps topics, objects and runs of one test apart from every other run."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def stream_job(settings) -> Iterator[stream.StreamJobConfig]:
    """A scratch stream job (checkpoints every 2 s) on a backlog with a few dead letters (`DEAD_LETTERS`), running;
    one per test module, removed with its topics after it."""
    cfg = stream.StreamJobConfig.scratch(
        "monitor", uuid.uuid4().hex[:8], checkpoint_interval_s=2, archive=False, aggregates=False
    )
    kafka_io.ensure_topic(cfg.source_topic, partitions=2)
    kafka_io.produce(generator.simulate(n_sensors=5, duration_s=30, seed=3), topic=cfg.source_topic)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for bad in DEAD_LETTERS:
        producer.send(cfg.source_topic, bad)
    producer.close()
    job_id, _ = stream.submit(cfg, fresh=True)
    try:
        flink.wait_running(job_id)
        yield cfg
    finally:
        stream.remove(cfg)


@pytest.fixture(scope="session")
def free_ports() -> Callable[[int], list[int]]:
    """`n` distinct free ports on 127.0.0.1 for a throwaway server. Every socket stays bound until all are chosen:
    ports picked one by one could repeat."""

    def pick(n: int) -> list[int]:
        with contextlib.ExitStack() as stack:
            sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
            for s in sockets:
                s.bind(("127.0.0.1", 0))
            return [s.getsockname()[1] for s in sockets]

    return pick


@pytest.fixture(scope="session")
def dead_letters() -> tuple[bytes, ...]:
    """The dead letters `stream_job` wrote."""
    return DEAD_LETTERS


@pytest.fixture(scope="session")
def forget_model() -> Callable[[str, str], None]:
    """Deletes a scratch registered model and its experiment from MLflow (either may be missing)."""

    def forget(model: str, experiment: str) -> None:
        client = MlflowClient(tracking_uri=config.load().mlflow_tracking_uri)
        with contextlib.suppress(Exception):
            client.delete_registered_model(model)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            client.delete_experiment(found.experiment_id)

    return forget
