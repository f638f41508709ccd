"""Training against the live platform: the archive on S3, runs in MLflow, the registry's champion alias.

Every name is unique to the test session (prefix, experiment, registered model), so the real
`sensor-anomaly-detector` is never touched and reruns do not see each other's data.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
import pytest
from mlflow import MlflowClient

from sensorops import archive, config, events, features, generator, platform, registry, storage, training
from sensorops.errors import UserError

pytestmark = pytest.mark.integration

TAG = uuid.uuid4().hex[:8]
ROOT = f"{archive.ROOT}/test-training-{TAG}"
LOCATION = f"{ROOT}/features"
EXPERIMENT = f"test-training-{TAG}"
MODEL = f"test-sensor-anomaly-detector-{TAG}"


@pytest.fixture(scope="module")
def archived() -> archive.ArchiveData:
    """Ten sensors over 36 hours at one reading per 30 s, written in the archive layout and read back."""
    platform.require("s3", "mlflow")
    storage.ensure_buckets()
    readings = generator.simulate(n_sensors=10, duration_s=36 * 3600, interval_s=30, seed=11)
    table = features.compute_features(events.to_dicts(readings))
    written = archive.write(table, LOCATION)
    assert len(written) == 36
    yield archive.read(LOCATION, "2026-11-27T00", "2026-11-28T11")
    archive.delete(ROOT)


@pytest.fixture(scope="module")
def session(archived: archive.ArchiveData, forget_model):
    split = training.time_split(archived.frame)
    results = training.train_models(split, ["logistic_regression", "isolation_forest"], n_folds=2, progress=False)
    logged = registry.log_session(
        results, split, archived.partitions, training.baselines(split.test), experiment=EXPERIMENT
    )
    yield split, results, logged
    forget_model(MODEL, EXPERIMENT)


def test_archive_reads_back_exactly_the_range(archived: archive.ArchiveData) -> None:
    assert len(archived.partitions) == 36
    assert archived.partitions[0] == f"{LOCATION}/dt=2026-11-27/hour=00"
    assert archived.partitions[-1] == f"{LOCATION}/dt=2026-11-28/hour=11"
    assert len(archived.frame) == 10 * 36 * 120
    assert archived.frame.event_time.is_monotonic_increasing


def test_empty_and_reversed_ranges_on_s3() -> None:
    empty = archive.read(LOCATION, "2025-01-01", "2025-01-01", columns=["event_time"])
    assert empty.frame.empty and list(empty.frame.columns) == ["event_time"] and empty.partitions == []
    with pytest.raises(UserError, match="ends .* before it starts"):
        archive.read(LOCATION, "2025-01-02", "2025-01-01")


def test_logged_metrics_equal_metrics_of_the_logged_model(session) -> None:
    split, results, logged = session
    client = MlflowClient(tracking_uri=config.load().mlflow_tracking_uri)
    for result in results:
        run = client.get_run(logged.models[result.name].run_id)
        model = registry.load_model(logged.models[result.name].model_uri)
        recomputed = training.evaluate_model(model, split.test).flat()
        logged_metrics = {k: v for k, v in run.data.metrics.items() if k in recomputed}
        assert set(logged_metrics) == set(recomputed)
        for key, value in recomputed.items():
            assert logged_metrics[key] == pytest.approx(value, abs=1e-9), (result.name, key)
        assert run.data.tags["mlflow.source.git.commit"]


def test_a_logged_model_pins_what_loading_it_needs(session) -> None:
    _, _, logged = session
    folder = mlflow.artifacts.download_artifacts(artifact_uri=logged.models["logistic_regression"].model_uri)
    pinned = (Path(folder) / "requirements.txt").read_text().split()
    names = {line.split("==")[0] for line in pinned}
    assert names >= set(registry.MODEL_REQUIREMENTS), pinned
    assert {"pytest", "rich"}.isdisjoint(names), pinned


def test_lineage_names_the_partitions(session, archived: archive.ArchiveData) -> None:
    _, _, logged = session
    lineage = registry.lineage_of(logged.models["logistic_regression"].run_id)
    assert lineage["partitions"] == archived.partitions
    client = MlflowClient(tracking_uri=config.load().mlflow_tracking_uri)
    for run_id in (logged.run_id, *(m.run_id for m in logged.models.values())):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        contexts = {tag.value for i in inputs for tag in i.tags if tag.key == "mlflow.data.context"}
        assert contexts == {"training", "testing"}, run_id
        assert all(json.loads(i.dataset.schema)["mlflow_colspec"] for i in inputs), run_id


def test_champion_moves_only_on_improvement(session) -> None:
    split, results, logged = session
    by_name = {r.name: r for r in results}
    weak, strong = sorted(by_name, key=lambda n: by_name[n].evaluation.metrics["f1"])
    assert by_name[strong].evaluation.metrics["f1"] > by_name[weak].evaluation.metrics["f1"]

    first = registry.register_and_promote(logged.models[weak], split.test, model_name=MODEL)
    assert first.promoted and registry.current_champion(MODEL) == first.version

    better = registry.register_and_promote(logged.models[strong], split.test, model_name=MODEL)
    assert better.promoted and better.champion_score == pytest.approx(first.score)
    assert registry.current_champion(MODEL) == better.version

    worse = registry.register_and_promote(logged.models[weak], split.test, model_name=MODEL)
    assert not worse.promoted
    assert registry.current_champion(MODEL) == better.version

    tie = registry.register_and_promote(logged.models[strong], split.test, model_name=MODEL)
    assert not tie.promoted, "a tie keeps the champion"
    assert registry.current_champion(MODEL) == better.version


def test_champion_scores_a_sample(session) -> None:
    split, _, _ = session
    if registry.current_champion(MODEL) is None:
        pytest.fail("test_champion_moves_only_on_improvement must run first and set a champion")
    model = registry.load_model(f"models:/{MODEL}@{registry.CHAMPION}")
    sample = training.model_inputs(split.test.head(20))
    predictions = model.predict(sample)
    assert len(predictions) == 20 and set(pd.unique(predictions)) <= {0, 1}


def test_a_pickled_model_is_refused(session) -> None:
    """Loading a pickle runs whatever code it carries: only skops models with our trusted types load."""
    split, results, _ = session
    mlflow.set_tracking_uri(config.load().mlflow_tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name="pickled"):
        info = mlflow.sklearn.log_model(results[0].model, name="model", serialization_format="cloudpickle")
    with pytest.raises(UserError, match="saved as cloudpickle"):
        registry.load_model(info.model_uri)
