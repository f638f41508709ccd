"""The Flink session cluster's client: submit a PyFlink job file, follow it, cancel it and resume it.

Every job of the project (the stream job today, the scoring job next) goes through here. Submission runs Flink's own
command-line client (`flink run -py FILE`, through `platform.local.flink_cli`) against `FLINK_REST_URL`; everything
else is the REST API. A job is known by its name: submitting a name that is already active returns the running job
instead of starting a second one (a file lock makes two concurrent submissions safe). The next submission of a name
resumes where the last job of that name stopped: from the savepoint taken when the platform stopped
(`stop_with_savepoint`), the checkpoint recorded when it was cancelled, or, when the job was lost (its JobManager
killed: a session cluster without high availability forgets its jobs), the newest checkpoint it retained in S3.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from sensorops import config
from sensorops.errors import ServiceUnavailable, UserError
from sensorops.waiting import wait_until

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
"""Where jobs checkpoint in `config.CHECKPOINT_BUCKET` (`execution.checkpointing.dir`): `<job id>/chk-<n>/`."""
ACTIVE_STATES = ("INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "RECONCILING", "FAILING", "CANCELLING")
FINAL_STATES = ("FAILED", "CANCELED", "FINISHED")


@dataclass
class JobStatus:
    """What the Flink REST API says about one job."""

    job_id: str
    name: str
    state: str
    started: float = 0.0
    """Epoch seconds."""
    duration_s: float = 0.0
    records_in: int = 0
    """Records read from the source topic."""
    records_out: dict[str, int] = field(default_factory=dict)
    """Records received by each sink, by sink table name."""
    restarts: int = 0
    """Times the job restarted after a failure (Flink's `numRestarts`): input must never move it."""
    checkpoints_completed: int = 0
    last_checkpoint: str = ""
    """External path of the latest completed checkpoint (where a resubmission resumes)."""
    checkpoint_id: int = 0
    checkpoint_bytes: int = 0
    """Full size of the latest completed checkpoint: the job's state."""
    checkpoint_s: float = 0.0
    """How long the latest completed checkpoint took, end to end."""
    checkpoint_started: float = 0.0
    """When the latest completed checkpoint was triggered (epoch seconds)."""

    @property
    def running(self) -> bool:
        """Active: running, or starting, restarting, failing (it still holds the job's name)."""
        return self.state in ACTIVE_STATES

    @property
    def healthy(self) -> bool:
        """Running, and not in the middle of a restart."""
        return self.state == "RUNNING"

    @property
    def records_per_s(self) -> float:
        return self.records_in / self.duration_s if self.duration_s > 0 else 0.0


def _rest(path: str, method: str = "GET", timeout: float = 10.0, **kwargs: Any) -> Any:
    url = config.load().flink_rest_url + path
    try:
        response = requests.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise ServiceUnavailable(
            f"Flink is not reachable at {url} ({type(exc).__name__}). Start the platform with `make up`."
        ) from exc
    if response.status_code == 404:
        raise UserError(f"Flink has no {path}")
    try:
        response.raise_for_status()
        return response.json() if response.content else {}
    except (requests.HTTPError, ValueError) as exc:
        raise ServiceUnavailable(
            f"Flink at {url} answered {response.status_code} ({str(exc)[:120]}); "
            "check it with `sensorops platform status` (start it with `make up`)"
        ) from exc


def jobs(name: str | None = None) -> list[dict[str, Any]]:
    """The cluster's jobs (newest first), optionally only those called `name`."""
    listed = _rest("/jobs/overview").get("jobs", [])
    listed.sort(key=lambda j: j.get("start-time", 0), reverse=True)
    return [j for j in listed if name is None or j["name"] == name]


def find_active(name: str) -> str | None:
    """The id of the running (or starting, restarting) job called `name`, if any."""
    for job in jobs(name):
        if job["state"] in ACTIVE_STATES:
            return job["jid"]
    return None


def _sum_metric(job_id: str, vertex_id: str, metric: str) -> int:
    got = _rest(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics", params={"get": metric, "agg": "sum"})
    return int(float(got[0]["sum"])) if got else 0


def _operator_metrics(job_id: str, vertex_id: str) -> list[str]:
    return [m["id"] for m in _rest(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics")]


WriterName = Callable[[dict[str, Any]], str]
"""Names the file sink of a vertex: Flink's file writers do not carry their table's name in their metrics."""

_KAFKA_WRITER = re.compile(r"^(\w+)\[\d+\].*__Writer\.numRecordsIn$")


def _count_metrics(job_id: str, vertex: dict[str, Any], file_writer: WriterName) -> list[tuple[str, str | None]]:
    """(metric, sink table) pairs to sum in a vertex; sink None for a source's records read."""
    try:
        available = _operator_metrics(job_id, vertex["id"])
    except UserError:
        return []
    pairs: list[tuple[str, str | None]] = []
    for metric in available:
        if metric.startswith("Source__") and metric.endswith(".numRecordsOut"):
            pairs.append((metric, None))
        elif metric == "StreamingFileWriter.numRecordsIn":
            pairs.append((metric, file_writer(vertex)))
        elif sink := _KAFKA_WRITER.match(metric):
            pairs.append((metric, sink.group(1)))
    return pairs


def _vertex_name(vertex: dict[str, Any]) -> str:
    return f"file sink of {vertex['name'][:40]}"


def _feeding(job_id: str) -> dict[str, set[str]]:
    """The ids of the vertices that feed each vertex of a job (its plan's edges)."""
    nodes = _rest(f"/jobs/{job_id}/plan").get("plan", {}).get("nodes", [])
    return {node["id"]: {edge["id"] for edge in node.get("inputs", [])} for node in nodes}


def status(name: str = "", job_id: str | None = None, file_writer: WriterName = _vertex_name) -> JobStatus:
    """State, record counts and checkpoints of the newest job called `name` (or of `job_id`).

    Records are counted as the sources read them and as each sink table receives them.
    """
    if job_id is None:
        listed = jobs(name)
        if not listed:
            raise UserError(f"no Flink job called {name!r}; submit it first (`sensorops stream|score submit`)")
        job_id = listed[0]["jid"]
    detail = _rest(f"/jobs/{job_id}")
    result = JobStatus(
        job_id=job_id,
        name=detail["name"],
        state=detail["state"],
        started=detail.get("start-time", 0) / 1000,
        duration_s=detail.get("duration", 0) / 1000,
    )
    if result.running:
        feeding = _feeding(job_id)
        for vertex in detail.get("vertices", []):
            vertex = {
                **vertex,
                "inputs": [v["name"] for v in detail["vertices"] if v["id"] in feeding.get(vertex["id"], ())],
            }
            for metric, sink in _count_metrics(job_id, vertex, file_writer):
                value = _sum_metric(job_id, vertex["id"], metric)
                if sink is None:
                    result.records_in += value
                else:
                    result.records_out[sink] = result.records_out.get(sink, 0) + value
    if result.running:
        with contextlib.suppress(UserError, LookupError, ValueError):
            result.restarts = int(float(_rest(f"/jobs/{job_id}/metrics", params={"get": "numRestarts"})[0]["value"]))
    checkpoints = _checkpoints_or_none(job_id)
    result.checkpoints_completed = checkpoints.get("counts", {}).get("completed", 0)
    latest = (checkpoints.get("latest") or {}).get("completed") or {}
    result.last_checkpoint = latest.get("external_path", "")
    result.checkpoint_id = latest.get("id", 0)
    result.checkpoint_bytes = latest.get("state_size", 0)
    result.checkpoint_s = latest.get("end_to_end_duration", 0) / 1000
    result.checkpoint_started = latest.get("trigger_timestamp", 0) / 1000
    return result


def user_metrics(job_id: str, names: Sequence[str]) -> dict[str, float]:
    """The largest value across subtasks of each user metric `names` of a job (a Python UDF's metric group), by name;
    a metric not reported yet is missing. Flink's REST API fetches metrics from the TaskManagers on request, at most
    every 10 s, and answers from what it fetched before: a first read may be that old."""
    found: dict[str, float] = {}
    for vertex in _rest(f"/jobs/{job_id}").get("vertices", []):
        for metric in _operator_metrics(job_id, vertex["id"]):
            name = next((n for n in names if metric.endswith(f".{n}")), None)
            if name is not None:
                got = _rest(f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics", params={"get": metric})
                with contextlib.suppress(LookupError, ValueError, TypeError):
                    found[name] = max(found.get(name, -math.inf), float(got[0]["max"]))
    return found


def checkpoints(job_id: str) -> dict[str, Any]:
    """Flink's checkpoint statistics of a job: counts, the latest completed, failed and restored, the history."""
    return _rest(f"/jobs/{job_id}/checkpoints")


def _checkpoints_or_none(job_id: str) -> dict[str, Any]:
    try:
        return checkpoints(job_id)
    except UserError:  # a job that never checkpointed, or one just gone
        return {}


def _state_file(name: str) -> Path:
    return config.load().home / "stream" / f"{name}.json"  # where the stream job kept them before there were others


def _remember(name: str, **values: Any) -> None:
    saved = {**_saved(name), **values}
    path = _state_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2))


def _saved(name: str) -> dict[str, Any]:
    path = _state_file(name)
    return json.loads(path.read_text()) if path.exists() else {}


def retained_checkpoint(job_id: str) -> str:
    """The newest checkpoint that job `job_id` left in S3 ('' if none)."""
    from sensorops import storage  # the minio SDK: 0.16 s that every other use of this module does without

    prefix = f"{CHECKPOINTS}/{job_id}/"
    found = storage.client().list_objects(config.CHECKPOINT_BUCKET, prefix=prefix, recursive=True)
    numbers = [int(m.group(1)) for o in found if (m := re.fullmatch(rf"{prefix}chk-(\d+)/_metadata", o.object_name))]
    return f"s3://{config.CHECKPOINT_BUCKET}/{prefix}chk-{max(numbers)}" if numbers else ""


def forget(name: str) -> None:
    """Delete what is kept to resume `name`: its record and the checkpoints its last job retained (scratch jobs)."""
    from sensorops import storage

    job_id = _saved(name).get("job_id")
    if job_id:
        storage.delete_prefix(config.CHECKPOINT_BUCKET, f"{CHECKPOINTS}/{job_id}/")
    for path in (_state_file(name), _state_file(name).with_suffix(".lock")):
        path.unlink(missing_ok=True)


def resume_point(name: str) -> str:
    """The savepoint or checkpoint a resubmission of `name` starts from ('' for a fresh start).

    That is the one recorded when the last job stopped; if it stopped without a word (lost with its JobManager, or
    failed), the newest checkpoint it retained; if it had none yet, where that job itself had resumed from.
    """
    saved = _saved(name)
    if saved.get("resume_from") or not saved.get("job_id"):
        return saved.get("resume_from", "")
    if any(job["jid"] == saved["job_id"] and job["state"] in ACTIVE_STATES for job in jobs(name)):
        return ""  # still running: `submit` returns it
    return retained_checkpoint(saved["job_id"]) or saved.get("resumed_from", "")


def rest_address(url: str) -> str:
    """`host:port` of a Flink REST URL, as `flink run -m` takes it (so a client anywhere reaches that cluster)."""
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        raise UserError(f"FLINK_REST_URL {url!r} names no host; set it like http://127.0.0.1:8081")
    return f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def submit(
    job_file: Path, name: str, args: Sequence[str] = (), *, fresh: bool = False, timeout: float = 180.0
) -> tuple[str, bool]:
    """Submit `job_file` (run with `args`) as the job `name`, unless a job of that name is active.

    Resumes from the checkpoint recorded when the previous run was cancelled, unless `fresh`.
    Returns (job id, whether a new job was started).
    """
    from sensorops.platform import local

    lock_path = _state_file(name).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two submissions at once must not both start a job
        existing = find_active(name)
        if existing:
            log.info("job %s is already running as %s", name, existing)
            return existing, False
        resume = "" if fresh else resume_point(name)
        command = ["run", "-d", "-m", rest_address(config.load().flink_rest_url)]
        command += ["-s", resume, "--allowNonRestoredState"] if resume else []
        command += ["-py", str(job_file), *args]
        log.info("submitting %s%s", name, f" from {resume}" if resume else "")
        done = local.flink_cli(*command, timeout=timeout)
        job_id = next((line.rsplit(" ", 1)[-1] for line in done.stdout.splitlines() if "JobID" in line), "")
        if not job_id:
            raise UserError(f"the Flink client submitted {name} but printed no job id: {done.stdout[-500:]}")
        _remember(name, job_id=job_id, args=list(args), resume_from="", resumed_from=resume)
        return job_id, True


def wait_running(job_id: str, timeout: float = 90.0) -> JobStatus:
    """Wait until every task of the job runs (so it reads its source); raise if it fails first."""

    def started() -> bool:
        detail = _rest(f"/jobs/{job_id}")
        if detail["state"] in FINAL_STATES:
            raise UserError(f"job {job_id} is {detail['state']}; see `sensorops stream status` and the Flink UI")
        return detail["state"] == "RUNNING" and {v["status"] for v in detail.get("vertices", [])} == {"RUNNING"}

    wait_until(started, timeout=timeout, interval=1, message=f"job {job_id} did not start")
    return status(job_id=job_id)


def wait_finished(job_id: str, timeout: float = 1800.0) -> JobStatus:
    """Wait until a job with bounded sources has finished; raise if it fails or is cancelled instead."""
    final = wait_until(
        lambda: status(job_id=job_id),
        lambda s: s.state in FINAL_STATES,
        timeout=timeout,
        interval=1,
        message=lambda s: f"job {job_id} is still {s.state} after {timeout:.0f} s",
    )
    if final.state != "FINISHED":
        raise UserError(f"job {job_id} ended {final.state}, not FINISHED; see the Flink UI")
    return final


def task_times(job_id: str) -> list[dict[str, float]]:
    """When each subtask of a job entered each state (`DEPLOYING`, `INITIALIZING`, `RUNNING`, `FINISHED`, ...), in
    epoch seconds: exact instants, unlike metrics, which the REST API refreshes every 10 s."""
    found = []
    for vertex in _rest(f"/jobs/{job_id}").get("vertices", []):
        for subtask in _rest(f"/jobs/{job_id}/vertices/{vertex['id']}/subtasktimes").get("subtasks", []):
            found.append({state: ms / 1000 for state, ms in subtask.get("timestamps", {}).items() if ms > 0})
    return found


def vertex_records(job_id: str) -> dict[str, int]:
    """Records each vertex of a job read (its `read-records`), by vertex name; final once the job has ended."""
    return {v["name"]: int(v.get("metrics", {}).get("read-records", 0)) for v in _rest(f"/jobs/{job_id}")["vertices"]}


def cancel(name: str, timeout: float = 60.0) -> JobStatus | None:
    """Cancel the active job called `name`, remembering its latest checkpoint for the next submission.

    Returns its final status (whatever it is after `timeout`), or None when nothing was running.
    """
    job_id = find_active(name)
    if not job_id:
        return None
    _rest(f"/jobs/{job_id}", method="PATCH", params={"mode": "cancel"})
    final = wait_until(
        lambda: status(job_id=job_id),
        lambda s: s.state in FINAL_STATES,
        timeout=timeout,
        message=f"job {name} ({job_id}) did not stop after it was cancelled",
    )
    if final.last_checkpoint:
        _remember(name, resume_from=final.last_checkpoint)
    log.info("cancelled %s (%s); resume point %s", name, job_id, final.last_checkpoint or "none")
    return final


def stop_with_savepoint(name: str, timeout: float = 120.0) -> str:
    """Stop the running job called `name` with a savepoint, recorded for the next `submit`; return its location.

    A job that is not RUNNING (restarting, say) cannot take one: it is cancelled, and resumes from its newest
    checkpoint. Returns '' when nothing was running.
    """
    job_id = find_active(name)
    if not job_id:
        return ""
    if status(job_id=job_id).state != "RUNNING":
        final = cancel(name, timeout)
        return final.last_checkpoint if final else ""
    request_id = _rest(f"/jobs/{job_id}/stop", method="POST", json={"drain": False})["request-id"]
    done = wait_until(
        lambda: _rest(f"/jobs/{job_id}/savepoints/{request_id}"),
        lambda r: r["status"]["id"] == "COMPLETED",
        timeout=timeout,
        interval=1,
        message=f"job {name} ({job_id}) took no savepoint in {timeout:.0f} s",
    )
    operation = done.get("operation", {})
    if "location" not in operation:
        cause = operation.get("failure-cause", {}).get("stack-trace", "no cause given").splitlines()[0]
        raise UserError(f"the savepoint of {name} failed ({cause}); it keeps running")
    _remember(name, resume_from=operation["location"])
    log.info("stopped %s (%s) with savepoint %s", name, job_id, operation["location"])
    return operation["location"]


def stop_all(timeout: float = 120.0) -> dict[str, str]:
    """Stop every running job with a savepoint (`stop_with_savepoint`): job name -> where it resumes from."""
    names = {job["name"] for job in jobs() if job["state"] in ACTIVE_STATES}
    return {name: stop_with_savepoint(name, timeout) for name in sorted(names)}
