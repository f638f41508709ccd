"""The scoring worker without Flink: the alias followed and swapped only after a load, decisions as `predict` makes
them, and alert changes beside the rows equal to the batch rule's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.model_selection import FixedThresholdClassifier
from sklearn.pipeline import Pipeline

from sensorops import events, features, generator, training
from sensorops.scoring import LiveModel, ScoringJobConfig, alerts, decide
from sensorops.scoring.job import RESULT_TYPES, ScoreFunction
from sensorops.training.data import MODEL_INPUTS, NUMERIC_FEATURES
from sensorops.training.models import preprocessor


class Registry:
    """Where an alias points and which versions load: what `LiveModel` asks of the registry."""

    def __init__(self) -> None:
        self.alias: str | None = None
        self.down = False
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def resolve(self, name: str, alias: str) -> str | None:
        if self.down:
            raise ConnectionError("registry unreachable")
        return self.alias

    def load(self, name: str, version: str) -> str:
        self.loads.append(version)
        if version in self.broken:
            raise OSError(f"version {version} does not load")
        return f"model {version}"


def test_a_new_version_is_swapped_in_only_once_it_has_loaded() -> None:
    reg = Registry()
    live = LiveModel("m", "champion", reg.resolve, reg.load)
    assert live.refresh() is None and live.failures == 0  # no alias yet: nothing to score with, nothing failed
    reg.alias = "1"
    assert live.refresh().version == "1"
    reg.alias, reg.broken = "2", {"2"}
    assert live.refresh().version == "1" and live.failures == 1 and live.swaps == 0
    reg.down = True
    assert live.refresh().version == "1" and live.failures == 2
    reg.down, reg.broken = False, set()
    assert live.refresh().model == "model 2" and live.swaps == 1
    assert live.refresh().version == "2" and reg.loads == ["1", "2", "2"]  # an unchanged alias loads nothing


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    readings = generator.simulate(n_sensors=4, duration_s=600, seed=3, anomaly_rate=0.15)
    return features.compute_features(events.to_dicts(readings))


def test_decisions_are_those_of_predict(table: pd.DataFrame) -> None:
    X, y = training.features_and_labels(table)
    pipeline = Pipeline([("prepare", preprocessor(scale=False)), ("model", RandomForestClassifier(10, random_state=0))])
    tuned = FixedThresholdClassifier(pipeline, threshold=0.3, response_method="predict_proba").fit(X, y)
    plain = pipeline.fit(X, y)
    iso = training.NormalOnlyDetector(
        Pipeline([("prepare", preprocessor(scale=True)), ("m", IsolationForest(random_state=0))])
    ).fit(X, y)
    for model, threshold in ((tuned, 0.3), (plain, 0.5), (iso, 0.0)):
        scores, flags, got = decide(model, X)
        assert got == threshold
        assert np.array_equal(flags, model.predict(X).astype(bool))
        assert len(scores) == len(X)


def test_worker_results_and_alerts_equal_the_batch_rule(table: pd.DataFrame) -> None:
    X, y = training.features_and_labels(table)
    model = RandomForestClassifier(20, random_state=0).fit(X[list(NUMERIC_FEATURES)].fillna(0), y)

    class Model:  # the forest on numeric inputs, as a model `decide` accepts
        def predict_proba(self, inputs: pd.DataFrame) -> np.ndarray:
            return model.predict_proba(inputs[list(NUMERIC_FEATURES)].fillna(0))

    reg = Registry()
    reg.alias = "7"
    worker = ScoreFunction(ScoringJobConfig(bootstrap_servers="127.0.0.1:9092", challenger_alias=""))
    worker.models = {"champion": LiveModel("m", "champion", reg.resolve, lambda n, v: Model())}
    worker.models["champion"].refresh()
    inputs = table[[*MODEL_INPUTS, "sensor_id", "event_time"]]
    size = len(inputs) // 7 + 1
    bundles = [worker.score(inputs.iloc[i : i + size]) for i in range(0, len(inputs), size)]  # state carries on
    results = pd.concat(bundles)
    assert list(results.columns) == list(RESULT_TYPES)
    assert (results["champion_version"] == "7").all() and results["challenger_version"].isna().all()
    streamed = results.dropna(subset=["alert_status"])
    batch = alerts.episodes(
        table.assign(
            decision=results["champion_decision"], score=results["champion_score"], model_version="7"
        ).sort_values("event_time", kind="stable")
    )
    assert len(batch) > 0
    assert sorted(streamed["alert_episode_id"] + streamed["alert_status"]) == sorted(
        batch["episode_id"] + batch["status"]
    )
