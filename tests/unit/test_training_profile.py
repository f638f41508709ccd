"""Training from a profile: the inputs a profile's models see, the split per sensor, the detectors of normal behaviour
saved and loaded like any model, and `sensorops train --profile` end to end on the shipped SKAB slice (MLflow on a
local SQLite file)."""

from __future__ import annotations

import argparse
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from sensorops import archive, features, profiles, registry, replay, stream, training
from sensorops.cli import train as train_cli
from sensorops.errors import UserError

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"


@pytest.fixture(scope="module")
def skab() -> tuple[features.FeatureSet, pd.DataFrame]:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    fs = features.for_profile(profile)
    return fs, fs.compute(replay.read_profile([SKAB], profile).events)


def test_default_inputs_are_unchanged() -> None:
    assert training.Inputs.for_features(features.for_profile()) == training.DEFAULT_INPUTS
    assert training.DEFAULT_INPUTS.columns == training.MODEL_INPUTS


def test_a_profiles_inputs(skab: tuple[features.FeatureSet, pd.DataFrame]) -> None:
    fs, _ = skab
    everything = training.Inputs.for_features(fs)
    deviations = training.Inputs.for_features(fs, "deviations")
    assert everything.numeric == tuple(fs.numeric) and everything.categorical == ()
    assert "current" in everything.numeric and "current" not in deviations.numeric
    assert "current_long_zscore" in deviations.numeric and "current_long_mean" not in deviations.numeric
    assert set(everything.numeric) - set(deviations.numeric) == set(fs.levels)
    smoothed = training.Inputs.for_features(fs, "smoothed")
    assert set(smoothed.numeric) == set(fs.smoothed) and "current_long_zscore" in smoothed.numeric
    assert not any(c.endswith(("_delta_10", "_rate_of_change", "_long_std")) for c in smoothed.numeric)
    with pytest.raises(UserError, match="inputs must be one of all, deviations, smoothed"):
        training.Inputs.for_features(fs, "raw")
    drifting = features.for_profile(
        profiles.from_dict({**fs.profile.to_dict(), "features": {"detrend": ["temperature"]}})
    )
    detrended = training.Inputs.for_features(drifting)
    levels = {"temperature", "temperature_rolling_mean", "temperature_long_mean"}
    assert set(everything.numeric) - set(detrended.numeric) == levels
    detrended_smooth = training.Inputs.for_features(drifting, "smoothed")
    assert set(smoothed.numeric) - set(detrended_smooth.numeric) == levels & set(fs.smoothed)
    assert "temperature_rolling_std" in detrended_smooth.numeric


def test_split_per_sensor(skab: tuple[features.FeatureSet, pd.DataFrame]) -> None:
    _, table = skab
    inputs = training.Inputs.for_features(skab[0])
    split = training.sensor_split(table, train_fraction=0.6, inputs=inputs)
    assert split.per_sensor and pd.isna(split.cutoff)
    for sensor, rows in table.groupby("sensor_id"):
        train = split.train[split.train["sensor_id"] == sensor]
        test = split.test[split.test["sensor_id"] == sensor]
        assert len(train) + len(test) == len(rows)
        assert train["event_time"].max() < test["event_time"].min()
        first, last = rows["event_time"].min(), rows["event_time"].max()
        assert train["event_time"].max() < first + (last - first) * 0.6 <= test["event_time"].min()
    with pytest.raises(UserError, match="single class: the training part"):
        training.sensor_split(table, train_fraction=0.3, inputs=inputs)  # each record's first 400 are normal


@pytest.mark.parametrize("name", ["pca_spe_t2", "normal_isolation_forest", "logistic_regression"])
def test_profile_models_score_on_their_own_inputs(skab: tuple[features.FeatureSet, pd.DataFrame], name: str) -> None:
    fs, table = skab
    inputs = training.Inputs.for_features(fs)
    split = training.sensor_split(table, inputs=inputs)
    result = training.search_model(name, split.train, split.test, n_folds=2, inputs=inputs)
    assert training.Inputs.of(result.model) == inputs
    again = training.evaluate_model(result.model, split.test)  # finds its inputs in the model
    assert again.metrics == result.evaluation.metrics
    assert {"f1", "false_alarm_rate", "missed_alarm_rate", "pr_auc", "event_recall"} <= set(again.metrics)
    with pytest.raises(UserError, match="lacks the columns"):
        training.evaluate_model(result.model, split.test.drop(columns=["current_zscore"]))


@pytest.mark.parametrize("name", ["pca_spe_t2", "normal_isolation_forest", "isolation_forest"])
def test_saved_detectors_load_with_the_trusted_types_only(
    skab: tuple[features.FeatureSet, pd.DataFrame], name: str, tmp_path: Path
) -> None:
    fs, table = skab
    inputs = training.Inputs.for_features(fs)
    split = training.sensor_split(table, inputs=inputs)
    model = training.spec(name).build(0, inputs).fit(*training.features_and_labels(split.train, inputs))
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)
    untrusted = set(skops.io.get_untrusted_types(file=path))
    assert untrusted and untrusted <= set(registry.TRUSTED_TYPES)
    loaded = skops.io.load(path, trusted=registry.TRUSTED_TYPES)
    X, _ = training.features_and_labels(split.test, inputs)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))


def test_models_all_and_detectors() -> None:
    assert training.model_names("all") == list(training.MODELS)
    assert training.model_names("all,detectors") == [*training.MODELS, *training.DETECTORS]
    assert training.model_names("detectors,pca_spe_t2") == list(training.DETECTORS)


def train_args(profile: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    return parser.parse_args(["train", "--profile", str(profile), str(SKAB), "--n-jobs", "1", *extra])


@pytest.fixture
def local_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """MLflow on a SQLite file in tmp_path, through the environment (monkeypatch restores it) and with mlflow's own
    global restored after the test: `registry.client` sets it, and it would leak into the tests that follow."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    monkeypatch.setattr(train_cli.platform, "require", lambda *services, timeout=0: {})
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    client.create_experiment("sensor-anomaly-detection-skab", artifact_location=(tmp_path / "artifacts").as_uri())
    return client


def test_train_profile_end_to_end(tmp_path: Path, local_mlflow: MlflowClient, capsys) -> None:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    path = profiles.save(profile, tmp_path / "skab.yaml")
    args = train_args(path, "--models", "logistic_regression,pca_spe_t2", "--split", "sensor", "--folds", "2")
    assert train_cli.run(args) == 0
    out = capsys.readouterr().out
    assert "read 4,515 readings of 4 files" in out and "flag_everything" in out

    experiment = local_mlflow.get_experiment_by_name("sensor-anomaly-detection-skab")
    runs = local_mlflow.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert parent.data.tags["sensorops.profile"] == "skab"
    assert parent.data.metrics["flag_everything.false_alarm_rate"] == 1.0
    children = {r.data.tags["sensorops.model"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert set(children) == {"logistic_regression", "pca_spe_t2"}
    for run in children.values():
        assert {"f1", "false_alarm_rate", "missed_alarm_rate", "pr_auc", "episodes", "event_recall"} <= set(
            run.data.metrics
        )

    champion = local_mlflow.get_model_version_by_alias("sensor-anomaly-detector-skab", registry.CHAMPION)
    assert "sensor-anomaly-detector-skab version 1" in out and "is the new champion" in out
    assert champion.tags["model"] in children
    assert local_mlflow.search_registered_models("name = 'sensor-anomaly-detector'") == []  # the default untouched
    model = registry.load_model("models:/sensor-anomaly-detector-skab@champion")
    fs = features.for_profile(profile)
    table = fs.compute(replay.read_profile([SKAB], profile).events)
    assert 0.0 <= training.evaluate_model(model, table).metrics["f1"] <= 1.0
    assert mlflow.get_tracking_uri().startswith("sqlite:")  # inside the test; restored after it


def test_files_need_a_profile_and_no_range(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    with pytest.raises(UserError, match="through a profile"):
        train_cli.run(parser.parse_args(["train", str(SKAB), "--no-mlflow"]))
    path = profiles.save(profiles.infer([SKAB], "datetime", label_column="anomaly").profile, tmp_path / "p.yaml")
    with pytest.raises(UserError, match="not both"):
        train_cli.run(train_args(path, "--start", "2024-01-01", "--no-mlflow"))


def test_a_profiles_archive_is_read_where_its_stream_job_writes_it(tmp_path: Path, monkeypatch) -> None:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    path = profiles.save(profile, tmp_path / "p.yaml")
    read = []
    monkeypatch.setattr(
        train_cli.archive,
        "read",
        lambda location, *_: read.append(location) or archive.ArchiveData(pd.DataFrame(), [], 0),
    )
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    for extra in ([], ["--prefix", "elsewhere/features"]):
        args = parser.parse_args(["train", "--profile", str(path), "--start", "2024-01-01", "--no-mlflow", *extra])
        with pytest.raises(UserError, match=f"stream submit --profile {path}"):
            train_cli.run(args)
    assert read == ["s3://sensor-archive/profiles/skab/features", "s3://sensor-archive/elsewhere/features"]
    assert read[0] == f"{stream.StreamJobConfig(profile=profile, bootstrap_servers='k:9092').archive_path}/features"


def test_a_normal_only_detector_saved_before_the_merge_still_scores(skab: tuple[features.FeatureSet, pd.DataFrame]):
    """Models registered earlier hold a `sensorops.training.NormalOnlyDetector` with the attributes it had then (no
    `feature_names_in_`): unpickled (state set on the class found by path), it scores as it did, on the default's
    inputs."""
    import importlib
    import pickle

    cls = importlib.import_module("sensorops.training").NormalOnlyDetector
    assert cls is importlib.import_module("sensorops.training.models").NormalOnlyDetector
    assert f"{cls.__module__}.{cls.__qualname__}" == "sensorops.training.NormalOnlyDetector"
    fs, table = skab
    inputs = training.Inputs.for_features(fs)
    X, y = training.features_and_labels(table, inputs)
    fitted = training.spec("isolation_forest").build(0, inputs).fit(X, y)
    state = {k: v for k, v in fitted.__dict__.items() if k != "feature_names_in_"}
    assert set(state) == {"detector", "max_fit_rows", "random_state", "detector_", "n_fit_rows_", "classes_"}
    old = pickle.loads(pickle.dumps(fitted))
    old.__dict__.clear()
    old.__setstate__(state)
    np.testing.assert_array_equal(old.predict(X), fitted.predict(X))
    assert training.Inputs.of(old) == training.DEFAULT_INPUTS
