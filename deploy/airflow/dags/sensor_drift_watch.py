"""sensor_drift_watch: every 10 minutes, the archive's last hour against the champion's training data; when the data
has moved, a run of sensor_mlops_pipeline that retrains on the records of that hour.

enabled >> check_drift >> drifted >> retrain

`enabled` lets a scheduled run go on only while the Airflow Variable `sensor_drift_watch` is `on` (Admin > Variables,
or `airflow variables set sensor_drift_watch on`): off by default, so that nothing retrains by itself until you ask
for it; a run started by hand always checks. `check_drift` is `sensorops drift check` (`monitoring.drift_check`: the
scores logged to MLflow and pushed to Prometheus); `drifted` goes on only if it found drift; `retrain` starts the
pipeline with `{"source": "recent", "recent_minutes": ...}`, whose challenger becomes the champion only if it beats the
champion on that recent data, and the scoring job follows the alias.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.timetables.trigger import CronTriggerTimetable

from sensorops import pipeline
from sensorops.monitoring import drift, drift_check
from sensorops.pipeline import operators

log = logging.getLogger(__name__)
DAG_ID = "sensor_drift_watch"
CHECK = {"retries": 1, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=10)}


def local_check():
    @task(task_id="check_drift", **CHECK)
    def check_drift() -> dict:
        params = get_current_context()["params"]
        check = drift_check.DriftCheck(
            minutes=params["minutes"], threshold=params["threshold"], decide_on=params["decide_on"]
        )
        outcome = drift_check.run(check)
        if outcome.push_error:
            log.warning(outcome.push_error)
        return outcome.summary()

    return check_drift()


def pod_check():
    # `--name=value`: rendered as native objects, a lone "{{ params.minutes }}" would become a float, not text
    arguments = ["check", "--minutes={{ params.minutes }}", "--threshold={{ params.threshold }}"]
    arguments += ["--decide-on={{ params.decide_on }}", f"--summary-file={pipeline.pod.XCOM_FILE}"]
    return operators.pod_operator("check_drift", ["sensorops", "drift"], arguments, **CHECK).output


@task.short_circuit(task_id="drifted")
def drifted(summary: dict) -> dict | bool:
    """The retraining run's conf if the check found drift; False skips `retrain`."""
    params = get_current_context()["params"]
    if not summary["drift_detected"]:
        return False
    return {**params["retrain_conf"], "source": "recent", "recent_minutes": params["minutes"]}


with DAG(
    dag_id=DAG_ID,
    description="Compare the archive's recent window with the champion's training data; retrain when it drifted",
    doc_md=__doc__,
    schedule=CronTriggerTimetable("*/10 * * * *", timezone="UTC", run_immediately=timedelta(0)),
    # No start_date: the first run waits for the next slot (see sensor_mlops_pipeline.py).
    catchup=False,
    is_paused_upon_creation=False,  # the schedule is switched by the Variable (`enabled`), not by pausing
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=20),
    render_template_as_native_obj=True,  # `retrain` gets the conf as a dict
    tags=["sensorops", pipeline.execution_mode()],
    params={
        "minutes": Param(60.0, type="number", exclusiveMinimum=0, description="the recent window, in minutes"),
        "threshold": Param(drift.PSI_DRIFT, type="number", exclusiveMinimum=0, description="PSI that is drift"),
        "decide_on": Param("stable", enum=list(drift_check.DECIDE_ON), description="columns that decide"),
        "retrain_conf": Param({}, type="object", description="more conf for the retraining run, e.g. models"),
    },
) as dag:
    summary = local_check() if pipeline.execution_mode() == "local" else pod_check()
    operators.schedule_switch(drift_check.WATCH_VARIABLE) >> summary
    drifted(summary) >> TriggerDagRunOperator(
        task_id="retrain",
        trigger_dag_id=pipeline.DAG_ID,
        conf="{{ ti.xcom_pull(task_ids='drifted') }}",
        fail_when_dag_is_paused=True,
    )
