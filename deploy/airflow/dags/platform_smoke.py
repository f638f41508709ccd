"""A one-task DAG that proves the scheduler, the executor and the execution API work together."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="platform_smoke", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["sensorops"])
def platform_smoke():
    @task
    def answer() -> int:
        return 42

    answer()


platform_smoke()
