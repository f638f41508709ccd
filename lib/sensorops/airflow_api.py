"""Airflow's REST API (v2): log in, trigger a DAG run and follow it to the end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from sensorops import config
from sensorops.errors import UserError
from sensorops.waiting import wait_until

FINISHED = {"success", "failed"}


@dataclass
class AirflowClient:
    settings: config.Settings = field(default_factory=config.load)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.base = f"{self.settings.airflow_api_url}/api/v2"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self._token()}"

    def _token(self) -> str:
        response = requests.post(
            f"{self.settings.airflow_api_url}/auth/token",
            json={"username": self.settings.airflow_username, "password": self.settings.airflow_password},
            timeout=self.timeout,
        )
        if response.status_code in (401, 403):
            raise UserError("Airflow refused the login: check AIRFLOW_USERNAME and AIRFLOW_PASSWORD in .env.")
        response.raise_for_status()
        return response.json()["access_token"]

    def get(self, path: str, **params) -> dict:
        response = self.session.get(f"{self.base}{path}", params=params, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def wait_for_dag(self, dag_id: str, timeout_s: float = 120.0) -> dict:
        """Wait until the DAG processor has parsed `dag_id`; raise naming the import errors if it never appears."""

        def not_there(_: requests.Response) -> str:
            errors = self.get("/importErrors").get("import_errors", [])
            lines = [f"{e['filename']}: {e['stack_trace'].splitlines()[-1]}" for e in errors]
            return f"DAG {dag_id!r} did not appear in Airflow ({'; '.join(lines) or 'no import errors'})"

        found = wait_until(
            lambda: self.session.get(f"{self.base}/dags/{dag_id}", timeout=self.timeout),
            lambda response: response.ok,
            timeout=timeout_s,
            interval=2,
            message=not_there,
        )
        return found.json()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause a DAG (its schedule starts no run) or unpause it."""
        self.session.patch(
            f"{self.base}/dags/{dag_id}", json={"is_paused": paused}, timeout=self.timeout
        ).raise_for_status()

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Start a run (unpausing the DAG if needed); return its run id."""
        self.set_paused(dag_id, False)
        response = self.session.post(
            f"{self.base}/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's task instances (state, start_date, end_date, try_number, ...)."""
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout_s: float = 600.0,
        poll_s: float = 2.0,
        on_change: Callable[[dict], None] | None = None,
    ) -> dict:
        """Poll a run until it finishes; return the run with its task instances under `tasks`.

        `on_change`, if given, is called with each task instance whose state changed since the last poll.
        """
        seen: dict[str, str | None] = {}

        def poll() -> dict:
            run = self.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            if on_change is not None:
                for ti in self.task_instances(dag_id, run_id):
                    if seen.get(ti["task_id"], "unseen") != ti["state"]:
                        seen[ti["task_id"]] = ti["state"]
                        on_change(ti)
            return run

        run = wait_until(
            poll,
            lambda r: r["state"] in FINISHED,
            timeout=timeout_s,
            interval=poll_s,
            message=lambda r: f"run {run_id} of {dag_id} is still {r['state']}",
        )
        run["tasks"] = self.task_instances(dag_id, run_id)
        return run

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int | None = None) -> str:
        """The text of a task's log (its latest try by default), one line per log event."""
        if try_number is None:
            ti = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
            try_number = max(ti["try_number"], 1)
        response = self.session.get(
            f"{self.base}/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"},
            headers={"Accept": "application/json"},
            timeout=self.timeout,
        )
        response.raise_for_status()
        content = response.json().get("content", [])
        if isinstance(content, str):
            return content
        lines = []
        for event in content:
            line = str(event.get("event", "")) if isinstance(event, dict) else str(event)
            if isinstance(event, dict) and event.get("error_detail"):
                line += "\n" + "\n".join(f"{e.get('exc_type')}: {e.get('exc_value')}" for e in event["error_detail"])
            lines.append(line)
        return "\n".join(lines)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The value a task pushed (by default what it returned)."""
        return self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]

    def ui_url(self, dag_id: str, run_id: str | None = None) -> str:
        """The page of a DAG, or of one of its runs, in the Airflow UI."""
        page = f"{self.settings.airflow_api_url}/dags/{dag_id}"
        return f"{page}/runs/{run_id}" if run_id else page
