"""A retry of a killed step neither repeats nor skips anything (issue 13), checked on the decisions, without services:
which events of the run's batch are still to produce, when the drill hook kills a process, and the champion
decision when the registry answers, says "no champion", or fails."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
from sklearn.dummy import DummyClassifier

from sensorops import events, features, generator, pipeline, registry, training
from sensorops.errors import ServiceUnavailable, UserError
from sensorops.pipeline import batch as batch_module
from sensorops.pipeline import faults

CTX = pipeline.RunContext("manual__2026-11-27T09:00:00+00:00", "2026-11-27T09:00:00Z")


def run_batch(start: str, seed: int = 7) -> list[bytes]:
    """The values `generate_batch` produces for a plan starting at `start` (broken ones included)."""
    params = pipeline.RunParams(n_sensors=5, duration_s=20, seed=seed, bad_rate=0.05)
    frame, keys, values, bad = batch_module.batch_events(params, start)
    assert len(values) == len(keys) == len(frame) == 200 and len(bad) == 10
    return values


def test_a_retry_regenerates_the_same_bytes_from_the_plan() -> None:
    """What makes the top-up exact: the same plan gives the same events, byte for byte, broken ones too."""
    first, again = run_batch("2026-11-27T09:00:00+00:00"), run_batch("2026-11-27T09:00:00+00:00")
    assert first == again and len(set(first)) == len(first)
    assert run_batch("2026-11-27T09:00:01+00:00") != first


def test_only_the_events_not_in_the_topic_are_produced_again() -> None:
    values = run_batch("2026-11-27T09:00:00+00:00")
    others = run_batch("2026-11-27T10:00:00+00:00", seed=8)[:30]  # another producer's events in the same offsets
    half = len(values) // 2
    assert batch_module.missing(values, values) == []
    assert batch_module.missing(values, []) == list(range(len(values)))
    assert batch_module.missing(values, [*others, *values[:half]]) == list(range(half, len(values)))
    assert batch_module.missing(values, values[1::2]) == list(range(0, len(values), 2))


def test_an_equal_value_written_once_stands_for_one_event() -> None:
    assert batch_module.missing([b"a", b"a", b"b"], [b"a"]) == [1, 2]
    assert batch_module.missing([b"a", b"b"], [b"a", b"a"]) == [1]


def test_the_plan_travels_as_json_and_back() -> None:
    plan = batch_module.BatchPlan(CTX.run_id, "2026-11-27T09:00:00+00:00", {0: 10, 2: 0}, {0: 3})
    sent = plan.to_xcom()
    assert sent["offsets_before"] == {"0": 10, "2": 0}
    assert batch_module.BatchPlan.from_xcom(sent) == plan


def test_a_batch_already_produced_for_the_run_is_returned_not_produced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest is stored only after every event was acknowledged; once it is there, nothing touches Kafka."""
    manifest = pipeline.BatchManifest(
        run_id=CTX.run_id,
        topic="sensor-events",
        start="2026-11-27T09:00:00+00:00",
        end="2026-11-27T09:00:59.500000+00:00",
        events=3000,
        bad=30,
        acknowledged=3000,
        produce_seconds=0.4,
        offsets={0: (10, 1510), 1: (0, 1500)},
        dead_letter_offsets={0: 0},
        anomaly_rate=0.08,
        anomaly_types={"none": 2760},
        offset_range=3000,
    )
    stored = {CTX.key(batch_module.MANIFEST): manifest.to_xcom()}
    asked = []
    monkeypatch.setattr(batch_module.store, "read_json", lambda key: asked.append(key) or stored.get(key))
    monkeypatch.setattr(batch_module, "_plan", lambda ctx: pytest.fail("planned a batch the run already has"))
    assert pipeline.generate_batch(CTX) == manifest
    assert asked == [CTX.key("batch.json")]


def test_the_fault_parameter_names_a_known_point() -> None:
    assert pipeline.RunParams.from_mapping({"fault": "after:register"}).fault == "after:register"
    assert pipeline.RunParams().fault == "", "off by default"
    with pytest.raises(UserError, match="unknown fault 'after:everything'; choose one of"):
        pipeline.RunParams(fault="after:everything")


def test_the_drill_hook_kills_once_per_run_at_its_point() -> None:
    assert faults.should_die("after:generate_batch", "after:generate_batch", already_died=False)
    assert not faults.should_die("after:generate_batch", "after:generate_batch", already_died=True), "the retry lives"
    assert not faults.should_die("after:register", "after:generate_batch", already_died=False)
    assert not faults.should_die("", "after:register", already_died=False)
    with pytest.raises(ValueError, match="unknown fault point"):
        faults.should_die("", "before:lunch", already_died=False)
    assert faults.marker_key(CTX, "after:register").startswith(CTX.key("fault-after-register"))


def test_without_a_fault_the_hook_asks_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults.store, "read_json", lambda key: pytest.fail("read a marker with no fault asked for"))
    faults.inject(CTX, "after:register")  # returns: no S3, no exit


NO_ALIAS = MlflowException("Registered model alias champion not found.", INVALID_PARAMETER_VALUE)
NO_MODEL = MlflowException("Registered Model with name=sensor-anomaly-detector not found", RESOURCE_DOES_NOT_EXIST)
UNREACHABLE = MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/... failed with exception ...")
OVERLOADED = RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try again"})


@pytest.mark.parametrize(
    ("error", "missing"),
    [(NO_ALIAS, True), (NO_MODEL, True), (UNREACHABLE, False), (OVERLOADED, False)],
    ids=["no alias", "no model", "unreachable", "overloaded"],
)
def test_only_no_alias_or_no_model_means_no_champion(error: MlflowException, missing: bool) -> None:
    assert registry.champion_is_missing(error) is missing
    assert not registry.champion_is_missing(MlflowException("not found", INTERNAL_ERROR))


class Registry:
    """Answers `get_model_version_by_alias` as given: a version, or an error."""

    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer

    def get_model_version_by_alias(self, name: str, alias: str):
        if isinstance(self.answer, Exception):
            raise self.answer
        return type("Version", (), {"version": self.answer})()


def test_a_registry_that_cannot_say_fails_the_step_rather_than_promote(monkeypatch: pytest.MonkeyPatch) -> None:
    for answer, expected in ((NO_ALIAS, None), (NO_MODEL, None), ("4", "4")):
        monkeypatch.setattr(registry, "client", lambda answer=answer: Registry(answer))
        assert registry.current_champion() == expected
    for error in (UNREACHABLE, OVERLOADED):
        monkeypatch.setattr(registry, "client", lambda error=error: Registry(error))
        with pytest.raises(ServiceUnavailable, match="did not say which version .* is the champion"):
            registry.current_champion()


@pytest.fixture(scope="module")
def test_period() -> pd.DataFrame:
    frame = generator.simulate(n_sensors=6, duration_s=120, seed=11, anomaly_rate=0.2)
    return training.time_split(features.compute_features(events.to_dicts(frame))).test


def flag_everything(test: pd.DataFrame) -> DummyClassifier:
    X, y = training.features_and_labels(test)
    return DummyClassifier(strategy="constant", constant=1).fit(X, y)


@pytest.mark.parametrize(
    "error", [UNREACHABLE, OVERLOADED, OSError("S3: connection reset"), TimeoutError("read timed out")]
)
def test_a_champion_that_cannot_be_fetched_fails_the_step(error: Exception, test_period: pd.DataFrame) -> None:
    def load(uri: str):
        assert uri == f"models:/{registry.MODEL_NAME}/3", "the version read, not the alias (which may move)"
        raise error

    with pytest.raises(ServiceUnavailable, match="could not fetch the champion .version 3.*not promoting"):
        registry.champion_score("3", test_period, load=load)


def test_a_champion_that_can_never_score_is_replaced(test_period: pd.DataFrame) -> None:
    def refused(uri: str):
        raise UserError("refusing to load it: it is saved as cloudpickle")

    class Broken:
        def predict(self, X):
            raise ValueError("X has 12 features, but the model expects 9")

    assert registry.champion_score("3", test_period, load=refused) == (
        None,
        "the champion (version 3) cannot be loaded: refusing to load it: it is saved as cloudpickle",
    )
    score, why = registry.champion_score("3", test_period, load=lambda uri: Broken())
    assert score is None and "cannot score this data: X has 12 features" in why
    score, why = registry.champion_score("3", test_period, load=lambda uri: flag_everything(test_period))
    assert 0 < score < 1 and why == ""


@pytest.mark.parametrize(
    ("champion", "champion_score", "promoted", "reason"),
    [
        (None, None, True, "no champion yet"),
        ("5", None, True, "version 5 is the champion already"),
        ("4", None, True, "cannot score this data"),
        ("4", 0.5, True, "f1 0.6000 beats the champion's 0.5000"),
        ("4", 0.6, False, "f1 0.6000 does not beat the champion's 0.6000"),
        ("4", 0.7, False, "does not beat"),
    ],
    ids=["first", "retry after promoting", "champion unusable", "better", "tie", "worse"],
)
def test_the_champion_decision(champion, champion_score, promoted: bool, reason: str) -> None:
    unscored = "the champion (version 4) cannot score this data: boom" if champion_score is None else ""
    decided, why = registry.decide("5", 0.6, champion, champion_score, unscored)
    assert decided is promoted and reason in why


def test_a_promotion_records_its_decision_in_the_xcom() -> None:
    fields = [f.name for f in dataclasses.fields(registry.Promotion)]
    assert {"version", "champion_version", "promoted", "reason"} <= set(fields)
