"""The DAG `sensor_mlops_pipeline` on the live platform: a run with one endpoint on a closed port stops at the health
check; a full run succeeds, balances its counts, leaves a new MLflow run linked to its report; its steps are safe to
run again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from sensorops import config, kafka_io, pipeline, registry, storage
from sensorops.airflow_api import AirflowClient
from sensorops.errors import ServiceUnavailable
from sensorops.pipeline import steps

pytestmark = pytest.mark.integration

DAG_ID = pipeline.DAG_ID
MODELS = "random_forest"  # one model: training has its own tests; here the run's wiring is under test


@pytest.fixture(scope="module")
def client(settings: config.Settings, airflow: AirflowClient) -> AirflowClient:
    return airflow  # tests/conftest.py: shared with the drills


def test_a_service_down_fails_the_health_check_and_nothing_downstream_runs(client: AirflowClient) -> None:
    run_id = client.trigger(DAG_ID, conf={"endpoints": {"mlflow": "http://127.0.0.1:1"}})
    run = client.wait_for_run(DAG_ID, run_id, timeout_s=600)
    states = {t["task_id"]: t for t in run["tasks"]}
    assert run["state"] == "failed"
    assert states["check_services"]["state"] == "failed"
    downstream = [name for name in pipeline.STEPS if name != "check_services"]
    assert {states[n]["state"] for n in downstream} == {"upstream_failed"}
    assert all(states[n]["try_number"] == 0 for n in downstream), "a downstream task was tried"
    log = client.task_log(DAG_ID, run_id, "check_services")
    assert "MLflow is not reachable at http://127.0.0.1:1" in log
    assert "make up" in log


@pytest.fixture(scope="module")
def full_run(run_pipeline) -> dict:
    """One full run with a fresh seed, followed to its end."""
    seed = uuid.uuid4().int % 10_000
    done = run_pipeline({"seed": seed, "models": MODELS})
    return {"run_id": done.run_id, "run": done.run, "outputs": done.outputs, "started": done.started, "seed": seed}


def test_full_run_succeeds(full_run: dict, client: AirflowClient) -> None:
    run = full_run["run"]
    failed = [t["task_id"] for t in run["tasks"] if t["state"] != "success"]
    tried = [t["task_id"] for t in run["tasks"] if t["state"] == "failed"]  # upstream_failed tasks have no log
    detail = "; ".join(client.task_log(DAG_ID, full_run["run_id"], n).splitlines()[-1] for n in tried[:2])
    assert run["state"] == "success", f"tasks not successful: {failed}: {detail}"
    assert {t["task_id"] for t in run["tasks"]} == {"enabled", *pipeline.STEPS}


def test_full_run_balances_what_it_produced(full_run: dict) -> None:
    batch = full_run["outputs"]["generate_batch"]
    validation = full_run["outputs"]["validate_data"]
    assert batch["acknowledged"] == batch["events"] == 3000
    assert batch["bad"] == 30
    counts = validation["counts"]
    assert counts["archived"] + counts["dead_letters"] == batch["acknowledged"]
    assert counts["dead_letters"] == batch["bad"]
    assert counts["feature_rows"] == counts["archived"]
    assert all(c["ok"] for c in validation["checks"])


def test_full_run_leaves_a_new_mlflow_run_linked_to_its_report(full_run: dict, settings: config.Settings) -> None:
    trained = full_run["outputs"]["train_and_evaluate"]
    report = full_run["outputs"]["write_report"]
    mlflow_run = registry.client(settings).get_run(trained["mlflow_run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.start_time / 1000 >= full_run["started"] - 5
    tags = mlflow_run.data.tags
    assert tags["sensorops.airflow_run_id"] == full_run["run_id"]
    assert tags["sensorops.report_uri"] == report["report_uri"]
    assert report["report_uri"] in tags["mlflow.note.content"]
    bucket, key = report["report_uri"].removeprefix("s3://").split("/", 1)
    body = storage.client(settings).get_object(bucket, key).read()
    assert len(body) == report["bytes"] and trained["mlflow_run_id"].encode() in body
    promotion = full_run["outputs"]["promote_model"]
    version = registry.client(settings).get_model_version(promotion["model_name"], promotion["version"])
    assert version.run_id == trained["model_run_id"]


def test_steps_are_safe_to_run_again(full_run: dict) -> None:
    """A retry of the batch, training or promotion returns what the first attempt did, and adds nothing."""
    outputs = full_run["outputs"]
    batch = outputs["generate_batch"]
    ctx = pipeline.RunContext(
        full_run["run_id"], batch["start"], pipeline.RunParams(seed=full_run["seed"], models=MODELS)
    )
    ends_before = kafka_io.end_offsets(config.SENSOR_TOPIC)
    assert pipeline.run_step("generate_batch", ctx) == batch
    assert kafka_io.end_offsets(config.SENSOR_TOPIC) == ends_before, "the batch was produced twice"
    again = pipeline.run_step("train_and_evaluate", ctx, {"generate_batch": batch})
    assert again["mlflow_run_id"] == outputs["train_and_evaluate"]["mlflow_run_id"]
    promoted = pipeline.run_step("promote_model", ctx, {"generate_batch": batch, "train_and_evaluate": again})
    assert promoted["version"] == outputs["promote_model"]["version"]


def test_when_the_operator_owns_the_jobs_the_steps_only_check_them(full_run: dict) -> None:
    """On Kubernetes (`SENSOROPS_FLINK_JOBS=operator`) the ensure steps find the running job at its own cluster's
    address and never submit; a missing job is an error that points at its FlinkDeployment."""
    ctx = pipeline.RunContext(full_run["run_id"], full_run["outputs"]["generate_batch"]["start"], pipeline.RunParams())

    def submit() -> tuple[str, bool]:
        raise AssertionError("a job the operator owns was submitted")

    with config.temporary_environment({"SENSOROPS_FLINK_JOBS": "operator"}):
        checked = pipeline.run_step("ensure_stream_job", ctx)
        assert (checked["job_id"], checked["started_now"]) == (
            full_run["outputs"]["ensure_stream_job"]["job_id"],
            False,
        )
        with pytest.raises(ServiceUnavailable, match="FlinkDeployment"):
            steps._ensure_job(f"absent-{uuid.uuid4().hex[:8]}", submit, config.load().flink_rest_url)
        with config.temporary_environment({"FLINK_SCORING_REST_URL": "http://127.0.0.1:9"}):
            with pytest.raises(ServiceUnavailable, match="127.0.0.1:9"):  # the scoring job's own cluster is asked
                pipeline.run_step("ensure_scoring_job", ctx)


WATCH_ID = "sensor_drift_watch"
CHECKED = {"enabled": "success", "check_drift": "success", "drifted": "success"}


@pytest.fixture
def watch(client: AirflowClient, full_run: dict) -> Callable[[dict], dict]:
    """Run `sensor_drift_watch` by hand over the window that holds the full run's batch (its scheduled runs skip the
    check: the Variable that switches them on is off)."""
    client.wait_for_dag(WATCH_ID)
    minutes = (time.time() - full_run["started"]) / 60 + 2

    def run(conf: dict) -> dict:
        run_id = client.trigger(WATCH_ID, conf={"minutes": minutes, **conf})
        finished = client.wait_for_run(WATCH_ID, run_id, timeout_s=600)
        finished["states"] = {t["task_id"]: t["state"] for t in finished["tasks"]}
        finished["summary"] = client.xcom(WATCH_ID, run_id, "check_drift")
        finished["run_id"], finished["minutes"] = run_id, minutes
        return finished

    return run


def test_the_watch_does_not_retrain_when_nothing_drifted(watch, client: AirflowClient) -> None:
    runs_before = client.get(f"/dags/{DAG_ID}/dagRuns", limit=1)["total_entries"]
    done = watch({"threshold": 1000.0})
    assert done["state"] == "success"
    assert done["states"] == {
        "enabled": "success",
        "check_drift": "success",
        "drifted": "success",
        "retrain": "skipped",
    }
    assert done["summary"]["drift_detected"] is False and done["summary"]["columns"] > 0
    assert client.get(f"/dags/{DAG_ID}/dagRuns", limit=1)["total_entries"] == runs_before


def test_the_watch_retrains_on_the_recent_records_when_they_drifted(watch, client: AirflowClient) -> None:
    """A threshold no score stays under: the check finds drift, and the pipeline run it starts takes the records of
    the window (the full run's batch) as its batch, trains, and decides on promotion."""
    done = watch({"threshold": 1e-9, "decide_on": "all", "retrain_conf": {"models": MODELS}})
    assert done["states"] == {
        "enabled": "success",
        "check_drift": "success",
        "drifted": "success",
        "retrain": "success",
    }
    assert done["summary"]["drift_detected"] is True
    retrain_id = client.xcom(WATCH_ID, done["run_id"], "retrain", key="trigger_run_id")
    retrain = client.get(f"/dags/{DAG_ID}/dagRuns/{retrain_id}")
    assert retrain["conf"] == {"models": MODELS, "source": "recent", "recent_minutes": done["minutes"]}
    finished = client.wait_for_run(DAG_ID, retrain_id, timeout_s=1200)
    failed = {t["task_id"]: t["state"] for t in finished["tasks"] if t["state"] != "success"}
    assert finished["state"] == "success", failed
    batch = client.xcom(DAG_ID, retrain_id, "generate_batch")
    assert batch["produce_seconds"] == 0.0, "a recent batch produces nothing"
    assert batch["events"] >= 3000 and batch["acknowledged"] == batch["events"]
    validation = client.xcom(DAG_ID, retrain_id, "validate_data")
    assert validation["counts"]["archived"] + validation["counts"]["dead_letters"] == batch["events"]
    promotion = client.xcom(DAG_ID, retrain_id, "promote_model")
    assert promotion["champion_version"] is not None, "the full run's model was the champion to beat"
    champion = registry.current_champion(promotion["model_name"])
    assert (champion == promotion["version"]) == promotion["promoted"], promotion["reason"]
