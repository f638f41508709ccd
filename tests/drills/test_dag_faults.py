"""DAG drills (issue 13): a task of `sensor_mlops_pipeline` killed hard (exit 137, as by SIGKILL) right after its
side effect is retried by Airflow, and the retry neither repeats nor skips it.

Each drill triggers a run with `conf={"fault": POINT}` (`pipeline.FAULTS`, the hook in `sensorops.pipeline.faults`):
the step's process dies once, at that point, and Airflow retries it. The run must then succeed with:

- the killed task tried exactly twice (the retry did not die again), and the hook's marker in S3;
- every event of the run's batch in the sensor topic exactly once, counted byte for byte against the events the
  run's stored plan regenerates (none lost, none twice), and the manifest counting each once;
- exactly one model version registered for the run (by the model's MLflow run and by the Airflow run id tag);
- the champion decision made and recorded: in the `promote_model` XCom, in the version's `champion_*` tags, and the
  `champion` alias pointing at a version consistent with it.

Run with `make drill` (or `pytest tests/drills/test_dag_faults.py -m drill`); each drill takes a few minutes.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from sensorops import config, pipeline, registry
from sensorops.pipeline import batch, faults, store

pytestmark = pytest.mark.drill

KILLED_TASK = {
    "during:generate_batch": "generate_batch",
    "after:generate_batch": "generate_batch",
    "after:register": "promote_model",
}
RETRY_SAYS = {
    "during:generate_batch": "events are in the topic already",
    "after:generate_batch": "events are in the topic already",
    "after:register": "was registered by an earlier attempt of this run",
}
"""What the retry logs when it picks up what the killed attempt left."""


def batch_copies(ctx: pipeline.RunContext) -> tuple[int, int, int]:
    """(events of the run's batch, how many are missing from the sensor topic, how many extra copies it holds)."""
    plan = batch.BatchPlan.from_xcom(store.read_json(ctx.key(batch.PLAN)))
    _, _, values, _ = batch.batch_events(ctx.params, plan.start)
    wanted = set(values)
    copies = Counter(v for v in batch.written_since(config.SENSOR_TOPIC, plan.offsets_before) if v in wanted)
    lost = sum(1 for v in values if copies[v] == 0)
    extra = sum(n - 1 for n in copies.values() if n > 1)
    return len(values), lost, extra


def versions_of(run_id: str, model_run_id: str) -> tuple[list, list]:
    """The model versions registered from the model's MLflow run, and those tagged with the Airflow run id."""
    client = registry.client()
    by_model_run = client.search_model_versions(f"name = '{registry.MODEL_NAME}' and run_id = '{model_run_id}'")
    every = client.search_model_versions(f"name = '{registry.MODEL_NAME}'")
    by_tag = [v for v in every if v.tags.get("sensorops.airflow_run_id") == run_id]
    return list(by_model_run), by_tag


@pytest.mark.parametrize("fault", pipeline.FAULTS)
def test_a_task_killed_after_its_side_effect_is_retried_without_repeating_or_skipping_it(
    fault: str, run_pipeline, airflow, record_drill
) -> None:
    conf = {"fault": fault, "seed": uuid.uuid4().int % 10_000}
    done = run_pipeline(conf, timeout_s=1800)
    ctx = pipeline.RunContext(done.run_id, done.run["run_after"], pipeline.RunParams.from_mapping(conf))
    task = KILLED_TASK[fault]
    assert done.run["state"] == "success", {t: i["state"] for t, i in done.tasks.items()}
    assert done.tasks[task]["try_number"] == 2, "killed once, then retried once (and not killed again)"
    assert store.read_json(faults.marker_key(ctx, fault)) is not None, "the hook never fired"
    assert RETRY_SAYS[fault] in airflow.task_log(pipeline.DAG_ID, done.run_id, task, try_number=2)

    manifest = done.outputs["generate_batch"]
    events, lost, extra = batch_copies(ctx)
    killed = f"DAG task {KILLED_TASK[fault]} killed {fault.split(':')[0]} its side effect"
    record_drill({"drill": killed, "acked": events, "lost": lost, "duplicated": extra, "restarts": "1 task retry"})
    assert (lost, extra) == (0, 0), f"{lost} events of the batch lost, {extra} produced twice"
    assert manifest["events"] == manifest["acknowledged"] == manifest["offset_range"] == events

    promotion, trained = done.outputs["promote_model"], done.outputs["train_and_evaluate"]
    by_model_run, by_tag = versions_of(done.run_id, trained["model_run_id"])
    assert [v.version for v in by_model_run] == [v.version for v in by_tag] == [promotion["version"]]
    tags = by_tag[0].tags
    assert tags["champion_decision"] == ("promoted" if promotion["promoted"] else "kept")
    assert tags["champion_reason"] == promotion["reason"] and promotion["reason"]
    champion = registry.current_champion()
    assert champion is not None, "no champion after a run that made the decision"
    if promotion["promoted"]:
        assert int(champion) >= int(promotion["version"]), "promoted, yet the alias points at an older version"
    else:
        assert champion != promotion["version"], "not promoted, yet the alias points at it"
