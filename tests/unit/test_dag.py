"""The DAG folder parses in both execution modes with the task graph below, and the pipeline's plumbing (parameters,
endpoint overrides, the pod command line, typed outputs and XComs, the broken events, the data checks, the report)
works without any service."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from sensorops import cli, config, events, features, generator, pipeline
from sensorops.errors import EXIT_FAILED, EXIT_USER_ERROR, ServiceUnavailable, UserError
from sensorops.pipeline import batch as batch_module
from sensorops.pipeline import checks
from sensorops.pipeline.xcom import XCom

DAGS = config.ROOT / "deploy" / "airflow" / "dags"

EXPECTED_EDGES = {
    ("enabled", "check_services"),
    ("check_services", "prepare"),
    ("prepare", "generate_batch"),
    ("prepare", "ensure_stream_job"),
    ("generate_batch", "wait_for_archive"),
    ("ensure_stream_job", "wait_for_archive"),
    ("wait_for_archive", "validate_data"),
    ("validate_data", "train_and_evaluate"),
    ("train_and_evaluate", "promote_model"),
    ("promote_model", "write_report"),
    ("promote_model", "ensure_scoring_job"),
    ("ensure_scoring_job", "judge_challenger"),
}

PARSE = textwrap.dedent(
    """
    import datetime, json, os, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.timetables.base import TimeRestriction

    def first_run(dag):  # what the scheduler makes of a DAG it has never run (`_time_restriction`)
        starts = [d for d in [dag.start_date, *(t.start_date for t in dag.tasks)] if d]
        restriction = TimeRestriction(min(starts, default=None), None, dag.catchup)
        info = dag.timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
        return info.run_after.isoformat()

    results = {}
    for mode in sys.argv[2:]:  # the DAG file reads the mode each time it is parsed
        os.environ["SENSOROPS_EXECUTION"] = mode
        bag = DagBag(dag_folder=sys.argv[1])
        out = results[mode] = {"errors": {k: str(v) for k, v in bag.import_errors.items()},
                               "dags": sorted(bag.dags), "tasks": {}}
        watch = bag.dags.get("sensor_drift_watch")
        if watch is not None:
            env = watch.get_template_env()
            out["watch"] = {
                "paused": watch.is_paused_upon_creation, "schedule": watch.timetable.summary,
                "first_run": first_run(watch),
                "max_active_runs": watch.max_active_runs, "params": watch.params.dump(),
                "tasks": {t.task_id: {"type": type(t).__name__, "downstream": sorted(t.downstream_task_ids)}
                          for t in watch.tasks},
                "trigger": watch.get_task("retrain").trigger_dag_id,
                "conf": repr(env.from_string(watch.get_task("retrain").conf).render(
                    ti=type("TI", (), {"xcom_pull": lambda self, task_ids: {"source": "recent"}})())),
            }
            check = watch.get_task("check_drift")
            if mode == "kubernetes":
                out["watch"]["cmds"] = check.cmds
                out["watch"]["arguments"] = [env.from_string(a).render(params=watch.params.dump())
                                             for a in check.arguments]
        dag = bag.dags.get("sensor_mlops_pipeline")
        if dag is None:
            continue
        out["schedule"] = dag.timetable.summary
        out["first_run"] = first_run(dag)
        out["params"] = {k: dag.params[k] for k in dag.params}
        out["tags"] = sorted(dag.tags)
        out["max_active_runs"] = dag.max_active_runs
        for t in dag.tasks:
            out["tasks"][t.task_id] = {
                "type": type(t).__name__, "downstream": sorted(t.downstream_task_ids), "retries": t.retries,
                "timeout_s": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "image": getattr(t, "image", None), "cmds": getattr(t, "cmds", None),
                "arguments": getattr(t, "arguments", None), "xcom": getattr(t, "do_xcom_push", None),
            }
        if mode == "kubernetes":  # render a pod's arguments as Airflow would, with stand-in XComs
            class TI:
                def xcom_pull(self, task_ids):
                    return {"generate_batch": {"offsets": {"0": [1, 5]}}, "train_and_evaluate": {"x": 1}}[task_ids]

            class Run:
                run_after = datetime.datetime(2026, 11, 27, 9, 0, 0, 500000, tzinfo=datetime.timezone.utc)

            context = {"run_id": "manual__2026-11-27T09:00:00+00:00", "dag_run": Run(), "ti": TI(),
                       "params": {**dag.params.dump(), "n_sensors": 7}}
            env = dag.get_template_env()
            out["rendered"] = [env.from_string(a).render(**context) for a in dag.get_task("promote_model").arguments]
    print(json.dumps(results))
    """
)
MODES = ("local", "kubernetes", "docker")


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The DAG folder parsed in each mode, in a fresh interpreter with Airflow's home in a temporary directory, and
    a moment before that parse (`parsed_after`)."""
    home = tmp_path_factory.mktemp("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "SENSOROPS_IMAGE": "registry.test/sensorops:9"}
    parsed_after = datetime.now(UTC).isoformat()
    done = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAGS), *MODES], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "parsed_after": parsed_after}


def edges(tasks: dict) -> set[tuple[str, str]]:
    return {(name, down) for name, t in tasks.items() for down in t["downstream"]}


@pytest.mark.parametrize("mode", ["local", "kubernetes"])
def test_dag_folder_imports_without_errors(parsed: dict, mode: str) -> None:
    result = parsed[mode]
    assert result["errors"] == {}, result["errors"]
    assert {"sensor_mlops_pipeline", "sensor_drift_watch", "platform_smoke"} <= set(result["dags"])


@pytest.mark.parametrize("mode", ["local", "kubernetes"])
def test_task_graph(parsed: dict, mode: str) -> None:
    tasks = parsed[mode]["tasks"]
    assert set(tasks) == {"enabled", *pipeline.STEPS}
    assert edges(tasks) == EXPECTED_EDGES
    assert parsed[mode]["max_active_runs"] == 1
    assert mode in parsed[mode]["tags"]


def test_every_task_reads_only_outputs_of_its_ancestors() -> None:
    upstream: dict[str, set[str]] = {}
    for a, b in EXPECTED_EDGES:
        upstream.setdefault(b, set()).add(a)

    def ancestors(name: str) -> set[str]:
        direct = upstream.get(name, set())
        return direct.union(*(ancestors(d) for d in direct)) if direct else set()

    for step in pipeline.STEPS.values():
        assert set(step.inputs) <= ancestors(step.name), f"{step.name} reads {step.inputs}"


@pytest.mark.parametrize("mode", ["local", "kubernetes"])
def test_retries_and_timeouts(parsed: dict, mode: str) -> None:
    tasks = parsed[mode]["tasks"]
    for name, step in pipeline.STEPS.items():
        assert tasks[name]["retries"] == step.retries
        assert tasks[name]["timeout_s"] == step.timeout_s
    assert tasks["check_services"]["retries"] >= 1, "a service restarting should not fail the run at once"
    assert tasks["validate_data"]["retries"] == 0, "bad data stays bad: no retry"


def test_local_mode_runs_python_tasks(parsed: dict) -> None:
    assert {parsed["local"]["tasks"][name]["type"] for name in pipeline.STEPS} == {"_PythonDecoratedOperator"}


def test_kubernetes_mode_runs_pods_of_the_project_image(parsed: dict) -> None:
    tasks = {name: parsed["kubernetes"]["tasks"][name] for name in pipeline.STEPS}
    assert {t["type"] for t in tasks.values()} == {"KubernetesPodOperator"}
    for name, t in tasks.items():
        assert t["image"] == "registry.test/sensorops:9"
        assert t["cmds"] == ["python", "-m", "sensorops.pipeline"]
        assert t["arguments"][0] == name
        assert t["xcom"] is True


@pytest.mark.parametrize("mode", ["local", "kubernetes"])
def test_the_pipeline_runs_nightly_once_switched_on(parsed: dict, mode: str) -> None:
    """At 02:00 UTC, behind the switch `enabled` (the Airflow Variable `sensor_mlops_pipeline`), which runs in the
    worker in both modes."""
    assert parsed[mode]["schedule"] == "0 2 * * *"
    assert parsed[mode]["tasks"]["enabled"]["type"] == "_ShortCircuitDecoratedOperator"
    assert parsed[mode]["watch"]["tasks"]["enabled"]["type"] == "_ShortCircuitDecoratedOperator"


def test_a_new_platform_waits_for_the_next_scheduled_slot(parsed: dict) -> None:
    """The first `make up` starts no run of its own: the newest past slot is skipped (`run_immediately=False`)."""
    parsed_at = datetime.fromisoformat(parsed["parsed_after"])  # not now: a slot may have passed since the parse
    for dag, first in (("pipeline", parsed["local"]["first_run"]), ("watch", parsed["local"]["watch"]["first_run"])):
        assert datetime.fromisoformat(first) > parsed_at, f"the {dag} DAG would run at {first} once parsed"


@pytest.mark.parametrize("mode", ["local", "kubernetes"])
def test_the_watch_checks_drift_and_only_then_retrains_on_recent_data(parsed: dict, mode: str) -> None:
    """Every 10 minutes (a Variable, not pausing, switches the scheduled checks on); the retraining run's conf
    reaches the trigger as a dict, not as its text."""
    watch = parsed[mode]["watch"]
    assert watch["paused"] is False and watch["max_active_runs"] == 1
    assert watch["schedule"] == "*/10 * * * *"
    assert edges(watch["tasks"]) == {("enabled", "check_drift"), ("check_drift", "drifted"), ("drifted", "retrain")}
    assert watch["tasks"]["retrain"]["type"] == "TriggerDagRunOperator"
    assert watch["trigger"] == pipeline.DAG_ID
    assert watch["conf"] == repr({"source": "recent"})
    assert set(watch["params"]) == {"minutes", "threshold", "decide_on", "retrain_conf"}


def test_scheduled_runs_go_on_only_once_switched_on() -> None:
    from airflow.sdk.api.datamodels._generated import DagRunType  # what the task context's `dag_run` holds

    goes_on = pipeline.scheduled_run_goes_on
    for scheduled in ("scheduled", DagRunType.SCHEDULED, str(DagRunType.SCHEDULED)):
        assert not goes_on(scheduled, None) and not goes_on(scheduled, "off")
        assert goes_on(scheduled, "on") and goes_on(scheduled, " ON\n")
    for by_hand in ("manual", DagRunType.MANUAL, str(DagRunType.MANUAL)):
        assert goes_on(by_hand, None) and goes_on(by_hand, "off")


def test_the_watch_pod_runs_the_drift_check_command_line(parsed: dict) -> None:
    """In Kubernetes mode the check is a pod running `sensorops drift check`; its rendered arguments parse."""
    watch = parsed["kubernetes"]["watch"]
    assert watch["tasks"]["check_drift"]["type"] == "KubernetesPodOperator"
    assert watch["cmds"] == ["sensorops", "drift"]
    args = cli.build_parser().parse_args(["drift", *watch["arguments"]])
    assert (args.minutes, args.threshold, args.decide_on) == (60.0, 0.2, "stable")
    assert args.summary_file == "/airflow/xcom/return.json"


def test_params_are_the_run_parameters(parsed: dict) -> None:
    assert parsed["local"]["params"] == pipeline.RunParams().as_dict()


def test_unknown_mode_is_an_import_error_that_names_the_setting(parsed: dict) -> None:
    errors = " ".join(parsed["docker"]["errors"].values())
    assert "SENSOROPS_EXECUTION" in errors and "kubernetes" in errors
    assert "sensor_mlops_pipeline" not in parsed["docker"]["dags"]


def test_pod_arguments_render_into_a_command_line_the_pipeline_accepts(parsed: dict) -> None:
    """What Airflow renders for a pod (run id, params, upstream XComs) is what `parse_args` reads back."""
    step, ctx, inputs, xcom_file = pipeline.parse_args(parsed["kubernetes"]["rendered"])
    assert step == "promote_model"
    assert ctx.run_id == "manual__2026-11-27T09:00:00+00:00" and ctx.params.n_sensors == 7
    assert ctx.start == pd.Timestamp("2026-11-27T09:00:00Z").to_pydatetime()
    assert inputs == {"generate_batch": {"offsets": {"0": [1, 5]}}, "train_and_evaluate": {"x": 1}}
    assert xcom_file == "/airflow/xcom/return.json"


def test_run_params_refuse_unknown_names_and_services() -> None:
    assert pipeline.RunParams.from_mapping({"n_sensors": 3}).n_sensors == 3
    with pytest.raises(UserError, match="unknown parameters n_sensor"):
        pipeline.RunParams.from_mapping({"n_sensor": 3})
    with pytest.raises(UserError, match="unknown service in endpoints: kafak"):
        pipeline.RunParams(endpoints={"kafak": "127.0.0.1:1"})


@dataclasses.dataclass(frozen=True)
class Seen(XCom):
    kafka: str
    s3: str
    mlflow_s3: str


def test_endpoint_overrides_apply_for_the_step_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(ctx: pipeline.RunContext) -> Seen:
        """What the step sees."""
        inside = config.load()
        return Seen(inside.kafka_bootstrap_servers, inside.aws_endpoint_url, os.environ["MLFLOW_S3_ENDPOINT_URL"])

    monkeypatch.setitem(pipeline.STEPS, "probe", pipeline.Step("probe", probe))
    before, s3_before = config.load(), os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    params = pipeline.RunParams(endpoints={"kafka": "127.0.0.1:1", "s3": "http://127.0.0.1:2"})
    seen = pipeline.run_step("probe", pipeline.RunContext("test", "2026-11-27T09:00:00Z", params))
    assert seen == {"kafka": "127.0.0.1:1", "s3": "http://127.0.0.1:2", "mlflow_s3": "http://127.0.0.1:2"}
    assert config.load() == before and os.environ.get("MLFLOW_S3_ENDPOINT_URL") == s3_before


def test_endpoint_variables_are_the_settings_of_config() -> None:
    assert set(pipeline.ENDPOINT_VARIABLES) == set(config.ENDPOINT_FIELDS)
    assert set(pipeline.ENDPOINT_VARIABLES.values()) <= set(config.DEFAULTS)
    assert {f.name for f in dataclasses.fields(pipeline.Services)} == set(config.ENDPOINT_FIELDS)


def test_health_check_names_every_service_it_cannot_reach() -> None:
    """Closed ports on loopback: the real checks fail, fast, and the message names each service and the fix."""
    closed = {
        "kafka": "127.0.0.1:1",
        "s3": "http://127.0.0.1:1",
        "flink": "http://127.0.0.1:1",
        "mlflow": "http://127.0.0.1:1",
        "airflow": "http://127.0.0.1:1",
    }
    ctx = pipeline.RunContext("test", "2026-11-27T09:00:00Z", pipeline.RunParams(endpoints=closed))
    with pytest.raises(ServiceUnavailable) as failure:
        pipeline.run_step("check_services", ctx)
    message = str(failure.value)
    for name in (
        "Kafka is not reachable at 127.0.0.1:1",
        "S3 is not",
        "Flink is not",
        "MLflow is not",
        "Airflow is not",
    ):
        assert name in message
    assert "make up" in message and "endpoints" in message


def test_cli_fails_with_the_message_and_writes_no_xcom(tmp_path: Path) -> None:
    xcom = tmp_path / "xcom" / "return.json"
    params = json.dumps({"endpoints": {"flink": "http://127.0.0.1:1"}})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sensorops.pipeline",
            "check_services",
            "--run-id",
            "t",
            "--params",
            params,
            "--xcom-file",
            str(xcom),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_FAILED
    assert "Flink is not reachable at http://127.0.0.1:1" in done.stderr
    assert not xcom.exists()


def test_cli_usage_error_exits_2_naming_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sensorops.pipeline", "prepare", "--run-id", "t", "--params", '{"n_sensor": 3}'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_USER_ERROR
    assert "python -m sensorops.pipeline prepare: error: unknown parameters n_sensor" in done.stderr


def test_a_step_without_its_inputs_is_refused() -> None:
    ctx = pipeline.RunContext("test", "2026-11-27T09:00:00Z")
    with pytest.raises(UserError, match="needs the output of generate_batch"):
        pipeline.run_step("validate_data", ctx, {})


def test_broken_events_are_seeded_and_become_dead_letters() -> None:
    frame = generator.simulate(n_sensors=4, duration_s=25, seed=3)
    _, values = events.serialize(frame)
    again = list(values)
    broken = pipeline.corrupt(values, 0.05, seed=3)
    assert broken == pipeline.corrupt(again, 0.05, seed=3)
    assert len(broken) == round(len(values) * 0.05) > 0
    assert [events.dead_letter_reason(values[i]) for i in broken] == ["invalid_json"] * len(broken)
    intact = set(range(len(values))) - set(broken)
    assert all(events.dead_letter_reason(values[i]) is None for i in intact)


MANIFEST = pipeline.BatchManifest(
    run_id="manual__x",
    topic=config.SENSOR_TOPIC,
    start="2026-11-27T09:00:00+00:00",
    end="2026-11-27T09:00:59.500000+00:00",
    events=100,
    bad=1,
    acknowledged=100,
    produce_seconds=0.2,
    offsets={0: (10, 60), 3: (0, 50)},
    dead_letter_offsets={0: 4, 1: 0},
    anomaly_rate=0.1,
    anomaly_types={"none": 90, "spike": 9},
    offset_range=100,
)


def test_outputs_travel_as_the_xcom_dicts_and_back() -> None:
    """Partition keys are strings and offset ranges lists in the XCom (and the manifest in S3), ints and tuples here."""
    sent = MANIFEST.to_xcom()
    assert sent["offsets"] == {"0": [10, 60], "3": [0, 50]} and sent["dead_letter_offsets"] == {"0": 4, "1": 0}
    assert list(sent)[-1] == "offset_range"
    assert pipeline.BatchManifest.from_xcom(json.loads(json.dumps(sent))) == MANIFEST
    with pytest.raises(UserError, match="cannot read the output of generate_batch: a BatchManifest needs"):
        pipeline.run_step(
            "validate_data",
            pipeline.RunContext("test", "2026-11-27T09:00:00Z"),
            {"generate_batch": {"offsets": {"0": [1, 5]}}},
        )


def test_each_step_takes_its_inputs_as_the_upstream_steps_return_them() -> None:
    for step in pipeline.STEPS.values():
        assert dataclasses.is_dataclass(step.output_type()), step.name
        for name, cls in step.input_types().items():
            assert cls is pipeline.STEPS[name].output_type(), f"{step.name} reads {name} as {cls.__name__}"


def test_run_context_slug_and_start() -> None:
    ctx = pipeline.RunContext("manual__2026-11-27T09:29:56.527250+00:00", "2026-11-27T09:29:56.527250+00:00")
    assert ctx.slug == "manual__2026-11-27T09_29_56.527250_00_00"
    assert ctx.start.isoformat() == "2026-11-27T09:29:56+00:00"
    assert ctx.key("report.html") == f"sensor_mlops_pipeline/{ctx.slug}/report.html"


def accounting(letters: int) -> batch_module.Accounting:
    """A batch found whole in the archive (one partition, offsets 0..n-1), then `letters` dead letters."""
    frame = generator.simulate(n_sensors=4, duration_s=25, seed=3)
    _, values = events.serialize(frame)
    feats = features.compute_features(events.to_dicts(frame))
    raw = feats[["sensor_id", "event_time"]].assign(
        payload=[v.decode() for v in values], kafka_partition=0, kafka_offset=range(len(values))
    )
    dead = pd.DataFrame(
        {
            "reason": ["invalid_json"] * letters,
            "kafka_partition": 0,
            "kafka_offset": range(len(values), len(values) + letters),
        }
    )
    return batch_module.Accounting(batch_module.BatchRows(raw, feats, ["s3://x/dt=2026-11-27/hour=09"]), dead)


def manifest_of(found: batch_module.Accounting) -> pipeline.BatchManifest:
    n = len(found.rows.raw) + len(found.dead_letters)
    return dataclasses.replace(
        MANIFEST, events=n, bad=len(found.dead_letters), acknowledged=n, offsets={0: (0, n)}, offset_range=n
    )


def test_the_data_checks_pass_a_balanced_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    found = accounting(letters=2)
    monkeypatch.setattr(checks, "count_archived", lambda batch: found)
    ctx = pipeline.RunContext("test", "2026-11-27T09:00:00Z")
    result = pipeline.run_step("validate_data", ctx, {"generate_batch": manifest_of(found).to_xcom()})
    assert [c["name"] for c in result["checks"] if not c["ok"]] == []
    assert len(result["checks"]) == 7 and result["dead_letter_reasons"] == {"invalid_json": 2}
    assert result["counts"] == {"archived": 200, "dead_letters": 2, "duplicates": 0, "feature_rows": 200}
    assert result["anomaly_rate"] == pytest.approx(found.rows.features["is_anomaly"].mean())


def test_the_data_checks_stop_a_batch_with_too_many_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    found = accounting(letters=20)
    monkeypatch.setattr(checks, "count_archived", lambda batch: found)
    ctx = pipeline.RunContext("test", "2026-11-27T09:00:00Z")
    with pytest.raises(pipeline.DataValidationError) as failure:
        pipeline.validate_data(ctx, manifest_of(found))
    assert "failed 1 check(s): dead-letter ratio: 0.0909091 not <= 0.05 (invalid_json: 20)" in str(failure.value)


def test_only_the_batch_offsets_count() -> None:
    frame = pd.DataFrame({"kafka_partition": [0, 0, 0, 3, 1, 0], "kafka_offset": [9, 10, 59, 0, 20, float("nan")]})
    assert batch_module.in_batch(frame, MANIFEST).tolist() == [False, True, True, True, False, False]


def test_report_is_one_html_page_with_checks_models_and_plots() -> None:
    from sensorops import registry

    ctx = pipeline.RunContext("manual__x", "2026-11-27T09:00:00Z")
    validation = pipeline.Validation(
        checks=[pipeline.Check("dead-letter ratio", False, 0.2, "<= 0.05", "invalid_json: 20")],
        counts=pipeline.ArchiveCounts(archived=99, dead_letters=1, duplicates=0, feature_rows=99),
        dead_letter_reasons={"invalid_json": 20},
        anomaly_rate=0.1,
    )
    trained = pipeline.Trained(
        mlflow_run_id="r1",
        mlflow_url="http://mlflow/#/runs/r1",
        best_model="random_forest",
        model_run_id="m1",
        model_uri="runs:/m1/model",
        partitions=[],
        train_rows=70,
        test_rows=30,
        test_metrics={"f1": 0.8},
        cv_f1=0.7,
    )
    promotion = registry.Promotion(
        model_name="m",
        version="3",
        score=0.8,
        champion_version="2",
        champion_score=0.9,
        promoted=False,
        reason="f1 0.8 does not beat the champion's 0.9",
    )
    comparison = pd.DataFrame(
        {
            "model": ["flag_everything", "random_forest"],
            "kind": ["baseline", "supervised"],
            "precision": [0.1, 0.8],
            "recall": [1.0, 0.8],
            "f1": [0.18, 0.8],
            "pr_auc": [0.1, 0.85],
        }
    ).set_index("model")
    page = pipeline.render_report(ctx, MANIFEST, validation, trained, promotion, comparison)
    assert page.startswith("<!doctype html>") and page.count("<html") == 1
    assert "dead-letter ratio" in page and "NO" in page and "invalid_json: 20" in page
    assert "random_forest" in page and "http://mlflow/#/runs/r1" in page and "not promoted" in page
    assert page.count("Plotly.newPlot") == 3


def test_a_reading_sent_again_outside_the_batch_is_not_a_second_feature_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Feature rows match the batch on (sensor_id, event_time); a key the archive also holds from outside the batch
    (the same reading sent twice) counts as many times as the batch has it."""
    from sensorops import archive

    t0, t1 = pd.Timestamp("2026-11-27T09:00:00Z"), pd.Timestamp("2026-11-27T09:00:01Z")
    raw = pd.DataFrame({"sensor_id": ["a", "a", "b", "a"], "event_time": [t0, t1, t0, t0], "payload": ["{}"] * 4,
                        "kafka_partition": [0, 0, 3, 1], "kafka_offset": [10, 11, 0, 5]})  # fmt: skip
    features = pd.DataFrame({"sensor_id": ["a", "a", "b", "a", "c"], "event_time": [t0, t1, t0, t0, t0]})
    tables = {archive.RAW: raw, archive.FEATURES: features}
    monkeypatch.setattr(archive, "read", lambda where, *a, **k: archive.ArchiveData(tables[where], ["p"], 1))
    rows = batch_module.batch_rows(MANIFEST)
    assert len(rows.raw) == 3  # the row at partition 1 is not the batch's
    assert sorted(zip(rows.features["sensor_id"], rows.features["event_time"])) == [("a", t0), ("a", t1), ("b", t0)]
