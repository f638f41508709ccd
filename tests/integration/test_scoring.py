"""The scoring job on the live platform, through one life: no champion yet, a champion, the alias moved during a
run, the registry down. One scratch job, a scratch registered model and topics of its own; feature rows are
produced straight to its features topic (what the stream job would write, computed by `features.compute_features`).

The tests run in file order: each continues the job the previous one left.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import mlflow
import orjson
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from sensorops import events, features, flink, generator, kafka_io, platform, registry, scoring, training
from sensorops.errors import ServiceUnavailable
from sensorops.platform import local
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:8]
MODEL = f"test-scoring-{TAG}"
SENSOROPS = str(Path(sys.executable).with_name("sensorops"))


def feature_rows(n_sensors: int, seconds: float, start: pd.Timestamp, seed: int) -> tuple[list[bytes], list[bytes]]:
    """Feature rows as the stream job writes them to its features topic: JSON, keyed by sensor."""
    readings = generator.simulate(n_sensors=n_sensors, duration_s=seconds, start=start, seed=seed, anomaly_rate=0.1)
    table = features.compute_features(events.to_dicts(readings))
    table["event_time"] = table["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    rows = table.astype({c: str for c in table.select_dtypes("category")}).to_dict("records")
    return [r["sensor_id"].encode() for r in rows], [orjson.dumps(r) for r in rows]


def times(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True, format="ISO8601")


def scores(cfg: scoring.ScoringJobConfig, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The scores topic, or its rows from event time `since` on (each phase of the test has its own span)."""
    rows = pd.DataFrame(kafka_io.read(cfg.scores_topic, max_records=10**6, timeout_s=30))
    return rows if since is None else rows[times(rows["event_time"]) >= since]


def wait_scored(cfg: scoring.ScoringJobConfig, total: int, timeout: float = 120) -> None:
    wait_until(lambda: sum(kafka_io.end_offsets(cfg.scores_topic).values()), lambda n: n >= total, timeout=timeout)


@pytest.fixture(scope="module")
def job():
    """The scoring job for a registered model that has no version yet, with a short poll."""
    cfg = scoring.ScoringJobConfig.scratch(
        TAG, model_name=MODEL, challenger_alias="", poll_s=5, metrics_window_s=60, metrics_slide_s=20
    )
    registry.client()
    job_id, _ = scoring.submit(cfg, fresh=True)
    flink.wait_running(job_id)
    yield cfg, job_id
    scoring.remove(cfg)
    client = registry.client()
    with contextlib.suppress(MlflowException):  # not there if the test stopped before registering it
        client.delete_registered_model(MODEL)
    if (experiment := client.get_experiment_by_name(MODEL)) is not None:
        client.delete_experiment(experiment.experiment_id)


@pytest.fixture(scope="module")
def model_uri() -> str:
    """A random forest trained on a day of simulated readings, logged to MLflow."""
    readings = generator.simulate(n_sensors=10, duration_s=24 * 3600, interval_s=30, seed=5)
    split = training.time_split(features.compute_features(events.to_dicts(readings)))
    results = training.train_models(split, ["random_forest"], n_folds=2, progress=False)
    logged = registry.log_session(results, split, [], training.baselines(split.test), experiment=MODEL)
    return logged.models["random_forest"].model_uri


def _status(cfg: scoring.ScoringJobConfig) -> str:
    done = subprocess.run(
        [SENSOROPS, "score", "status", "--name", cfg.name, "--model-name", MODEL],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_a_champion_the_job_waits_and_says_so(job) -> None:
    cfg, job_id = job
    keys, values = feature_rows(5, 60, pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=30), seed=1)
    kafka_io.produce((keys, values), cfg.features_topic)
    wait_scored(cfg, len(values))
    unscored = scores(cfg)
    assert len(unscored) == len(values)
    assert unscored["model_version"].isna().all() and unscored["score"].isna().all()
    status = scoring.status(job_id=job_id)
    assert status.healthy and status.restarts == 0
    assert "waiting for it to be registered" in _status(cfg)


class Trickle:
    """Feature rows produced at a steady pace, later and later in event time: what a live stream looks like."""

    def __init__(self, cfg: scoring.ScoringJobConfig, start: pd.Timestamp) -> None:
        self.cfg, self.start, self.next, self.produced = cfg, start, start, 0

    def step(self) -> None:
        keys, values = feature_rows(4, 2, self.next, seed=self.produced)
        kafka_io.produce((keys, values), self.cfg.features_topic)
        self.next += pd.Timedelta(seconds=2)
        self.produced += len(values)
        time.sleep(0.5)


def test_a_new_champion_scores_within_a_poll(job, model_uri: str) -> None:
    cfg, job_id = job
    for _ in range(2):  # versions 1 and 2 of the same model
        mlflow.register_model(model_uri, MODEL)
    registry.client().set_registered_model_alias(MODEL, registry.CHAMPION, "1")
    before = sum(kafka_io.end_offsets(cfg.scores_topic).values())
    trickle = Trickle(cfg, pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=20))
    for _ in range(40):  # until the workers' next poll (every 5 s) has loaded version 1
        trickle.step()
        if "1" in {r["model_version"] for r in kafka_io.read(cfg.scores_topic, last=20, timeout_s=5)}:
            break
    batch_start = trickle.next
    keys, values = feature_rows(5, 60, batch_start, seed=2)
    kafka_io.produce((keys, values), cfg.features_topic)
    wait_scored(cfg, before + trickle.produced + len(values))
    scored = scores(cfg, since=batch_start)
    assert len(scored) == len(values)
    assert (scored["model_version"] == "1").all()
    assert scored["decision"].notna().all() and scored["threshold"].nunique() == 1
    assert scored["decision"].any(), "a tenth of the readings are anomalous: some must be flagged"


def test_moving_the_alias_swaps_the_model_without_a_gap(job) -> None:
    cfg, job_id = job
    before = sum(kafka_io.end_offsets(cfg.scores_topic).values())
    trickle = Trickle(cfg, pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=10))
    moved_at = None
    for second in range(40):  # the alias moves a quarter of the way in
        if second == 10:
            registry.client().set_registered_model_alias(MODEL, registry.CHAMPION, "2")
            moved_at = pd.Timestamp.now(tz="UTC")
        trickle.step()
    wait_scored(cfg, before + trickle.produced)
    scored = scores(cfg, since=trickle.start)
    assert len(scored) == trickle.produced
    assert Counter(scored["model_version"]).keys() == {"1", "2"}
    assert not scored.duplicated(["sensor_id", "event_time", "model_version"]).any()
    first_v2 = times(scored.loc[scored["model_version"] == "2", "scored_at"]).min()
    assert (first_v2 - moved_at).total_seconds() < 60
    after = scored[times(scored["scored_at"]) > first_v2]
    assert (after["model_version"] == "2").all(), "once swapped, every bundle is scored by the new version"
    print(f"alias moved -> first score by version 2: {(first_v2 - moved_at).total_seconds():.1f} s")


def mlflow_answers() -> bool:
    try:
        platform.require("mlflow")
    except ServiceUnavailable:
        return False
    return True


def test_a_registry_outage_keeps_the_current_model_scoring(job) -> None:
    cfg, job_id = job
    control = local.supervisor(local.layout()).supervisor
    before = sum(kafka_io.end_offsets(cfg.scores_topic).values())
    trickle = Trickle(cfg, pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(minutes=5))
    control.stopProcess("platform:mlflow")
    try:
        for _ in range(30):  # a few polls fail meanwhile (metrics travel with bundles: the trickle carries them)
            trickle.step()
        wait_scored(cfg, before + trickle.produced)
        failures = wait_until(
            lambda: flink.user_metrics(job_id, ["champion_registry_failures"]).get("champion_registry_failures", 0),
            lambda n: n > 0,
            timeout=30,  # the REST API answers from metrics it fetched up to 10 s before
        )
    finally:
        control.startProcess("platform:mlflow")
        wait_until(mlflow_answers, timeout=120)
    scored = scores(cfg, since=trickle.start)
    assert len(scored) == trickle.produced and (scored["model_version"] == "2").all()
    assert failures > 0
    status = scoring.status(job_id=job_id)
    assert status.healthy and status.restarts == 0


def test_alerts_and_live_metrics_follow_the_scores(job) -> None:
    cfg, _ = job
    scored = scores(cfg).dropna(subset=["model_version"])
    changes = pd.DataFrame(kafka_io.read(cfg.alerts_topic, max_records=10**6, timeout_s=30))
    assert set(changes["status"]) >= {"open", "closed"}
    assert (changes.groupby("episode_id")["status"].first() == "open").all(), "an episode starts with its opening"
    metrics = pd.DataFrame(
        wait_until(
            lambda: kafka_io.read(cfg.metrics_topic, committed_only=True, timeout_s=10),
            lambda rows: {r["model_version"] for r in rows} >= {"1", "2"},
            timeout=90,
        )
    )
    assert (metrics["events"] == metrics[["tp", "fp", "fn", "tn"]].sum(axis=1)).all()
    assert metrics["events"].max() <= len(scored)
