"""sensor_mlops_pipeline: from a bounded batch of sensor events to a promoted model and a run report.

enabled >> check_services >> prepare >> [generate_batch, ensure_stream_job] >> wait_for_archive >> validate_data
    >> train_and_evaluate >> promote_model >> [write_report, ensure_scoring_job >> judge_challenger]

Nightly at 02:00 UTC once switched on: `enabled` lets a scheduled run go on only while the Airflow Variable
`sensor_mlops_pipeline` is `on` (`pipeline.SCHEDULE_VARIABLE`), off by default so that no run moves the champion under
a learner's notebooks; a run started by hand or by `sensor_drift_watch` always goes on.

The task bodies live in `sensorops.pipeline`; this file only wires them. `SENSOROPS_EXECUTION=kubernetes` (read when
the file is parsed) runs every task as a pod of the project's image (`SENSOROPS_IMAGE`) instead of in the worker.
Trigger with a `conf` to change the batch or point a service elsewhere, e.g. `{"endpoints": {"kafka": "host:9092"}}`.
Every task is safe to retry, even when killed; `{"fault": "after:generate_batch"}` (a drill hook, `pipeline.FAULTS`)
kills one once to prove it (tests/drills/test_dag_faults.py).
"""

from __future__ import annotations

import warnings
from datetime import timedelta

from airflow.sdk import DAG, Param, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from sensorops import pipeline
from sensorops.pipeline import operators

MODE = pipeline.execution_mode()
SCHEDULE = CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=timedelta(0))
"""Nightly at 02:00 UTC on a generated batch (once `enabled`); `sensor_drift_watch` starts it on recent data."""
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object"}


def retry_args(step: pipeline.Step) -> dict:
    """Retries and a timeout for every task, from the step's definition."""
    return {
        "retries": step.retries,
        "retry_delay": timedelta(seconds=step.retry_delay_s),
        "execution_timeout": timedelta(seconds=step.timeout_s),
    }


def local_task(step: pipeline.Step):
    """The step as a Python task in the Airflow worker."""

    @task(task_id=step.name, doc_md=step.doc, **retry_args(step))
    def run() -> dict:
        # Saving a model looks for each NumPy and SciPy function in every imported module (`pickle.whichmodule`), and
        # each lookup in one of Airflow's deprecated aliases (`airflow.utils.timezone`, ...) warns: 1,680 log lines
        # and 7 s per training task. (Set here: Airflow undoes the filters a DAG file sets while it is parsed.)
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"The `airflow\.")
        context = get_current_context()
        ctx = pipeline.RunContext(
            run_id=context["run_id"],
            run_after=context["dag_run"].run_after.isoformat(),
            params=pipeline.RunParams.from_mapping(dict(context["params"])),
            dag_id=context["dag"].dag_id,
        )
        inputs = {name: context["ti"].xcom_pull(task_ids=name) for name in step.inputs}
        return pipeline.run_step(step.name, ctx, inputs)

    return run()


def pod_task(step: pipeline.Step):
    """The step as a pod of the project's image, running `python -m sensorops.pipeline STEP` (`pipeline.pod`: Pod
    Security `restricted` admits it)."""
    return operators.pod_operator(
        step.name,
        ["python", "-m", "sensorops.pipeline"],
        pipeline.pod_arguments(step.name),
        doc_md=step.doc,
        **retry_args(step),
    )


with DAG(
    dag_id=pipeline.DAG_ID,
    description="Generate a batch, stream it to the archive, validate, train, promote, report",
    doc_md=__doc__,
    schedule=SCHEDULE,
    # No start_date, and run_immediately=timedelta(0): with a start_date Airflow runs the newest past slot at once,
    # and run_immediately=False still does within a tenth of the period, so the first `make up` started a nightly run
    # (3 minutes, a new champion) under the learner's first notebooks.
    catchup=False,
    max_active_runs=1,  # runs share the stream job and the champion alias
    dagrun_timeout=timedelta(minutes=45),
    tags=["sensorops", MODE],
    params={
        name: Param(value, type=JSON_TYPES[type(value)], description=f"sensorops.pipeline.RunParams.{name}")
        for name, value in pipeline.RunParams().as_dict().items()
    },
) as dag:
    make = local_task if MODE == "local" else pod_task
    t = {step.name: make(step) for step in pipeline.STEPS.values()}
    operators.schedule_switch(pipeline.SCHEDULE_VARIABLE) >> t["check_services"]
    t["check_services"] >> t["prepare"] >> [t["generate_batch"], t["ensure_stream_job"]] >> t["wait_for_archive"]
    t["wait_for_archive"] >> t["validate_data"] >> t["train_and_evaluate"] >> t["promote_model"]
    t["promote_model"] >> [t["write_report"], t["ensure_scoring_job"]]
    t["ensure_scoring_job"] >> t["judge_challenger"]
