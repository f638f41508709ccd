"""`sensorops train --profile` against the live MLflow: the shipped SKAB slice read through its profile, the four
models and the detectors of normal behaviour trained, logged and the best one registered under the profile's model.

The experiment and the registered model are unique to the test session (removed after it); the real
`sensor-anomaly-detector` and its champion are never touched."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from sensorops import config, features, profiles, registry, replay, training
from sensorops.cli import train as train_cli

pytestmark = pytest.mark.integration

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"
TAG = uuid.uuid4().hex[:8]
EXPERIMENT = f"test-training-profile-{TAG}"
MODEL = f"test-sensor-anomaly-detector-skab-{TAG}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, settings: config.Settings, forget_model):
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    path = profiles.save(profile, tmp_path_factory.mktemp("profile") / "skab.yaml")
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    argv = ["train", "--profile", str(path), str(SKAB), "--split", "sensor", "--n-jobs", "2"]
    args = parser.parse_args([*argv, "--experiment", EXPERIMENT, "--model-name", MODEL])
    assert train_cli.run(args) == 0
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    yield profile, client
    forget_model(MODEL, EXPERIMENT)


def test_every_model_and_detector_is_logged_with_far_and_mar(trained) -> None:
    _, client = trained
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["sensorops.profile"] == "skab"
    assert parent.data.metrics["flag_everything.false_alarm_rate"] == 1.0
    children = {r.data.tags["sensorops.model"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {*training.MODELS, *training.DETECTORS}
    for run in children.values():
        assert {"f1", "false_alarm_rate", "missed_alarm_rate", "pr_auc", "event_recall"} <= set(run.data.metrics)


def test_the_best_model_is_the_profiles_champion(trained) -> None:
    profile, client = trained
    champion = client.get_model_version_by_alias(MODEL, registry.CHAMPION)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], "tags.sensorops.model != ''")
    best = max(runs, key=lambda r: r.data.metrics["cv_f1"])
    assert champion.tags["model"] == best.data.tags["sensorops.model"]

    model = registry.load_model(f"models:/{MODEL}@{registry.CHAMPION}")  # skops, trusted types only
    fs = features.for_profile(profile)
    table = fs.compute(replay.read_profile([SKAB], profile).events)
    split = training.sensor_split(table, inputs=training.Inputs.for_features(fs))
    f1 = training.evaluate_model(model, split.test).metrics["f1"]
    assert f1 == pytest.approx(float(champion.tags["test_f1"]), abs=1e-6)
