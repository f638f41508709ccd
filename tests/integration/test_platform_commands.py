"""`sensorops platform up|status|down` as a user runs them, faults included.

Tests marked `lifecycle` stop and restart the real platform: `make test` runs them last.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from sensorops import config, flink, storage, stream
from sensorops.platform import local
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

SENSOROPS = str(Path(sys.executable).with_name("sensorops"))


def sensorops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SENSOROPS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600
    )


def platform_pids() -> dict[str, tuple[int, ...]]:
    return {row.service: row.pids for row in local.status()}


def test_status_lists_every_service_up(settings):
    result = sensorops("platform", "status")
    assert result.returncode == 0, result.stdout
    for service in ("kafka", "s3", "flink", "mlflow", "airflow"):
        assert f"{service} " in result.stdout
    assert "DOWN" not in result.stdout


def test_up_twice_changes_nothing(settings):
    before = platform_pids()
    result = sensorops("platform", "up")
    assert result.returncode == 0, result.stderr
    assert platform_pids() == before


def test_a_taken_port_is_named_with_its_service(settings, tmp_path):
    # Another platform home has no supervisor running, so `up` finds the ports that the real platform holds.
    result = sensorops("platform", "up", env={"SENSOROPS_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "port 9092 (kafka) is used by" in result.stderr
    assert "port 5000 (mlflow) is used by" in result.stderr
    assert "Traceback" not in result.stderr


def test_down_with_nothing_running_says_so(tmp_path):
    result = sensorops("platform", "down", env={"SENSOROPS_HOME": str(tmp_path)})
    assert result.returncode == 0
    assert "Nothing was running" in result.stdout


def test_status_fails_when_services_are_down(tmp_path):
    unreachable = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "FLINK_REST_URL": "http://127.0.0.1:1"}
    result = sensorops("platform", "status", env=unreachable)
    assert result.returncode == 1
    assert re.search(r"^kafka +DOWN", result.stdout, flags=re.M)


def test_the_connector_jars_in_flink_lib_match_pyflink(settings):
    from sensorops.versions import versions

    v = versions()
    names = {p.name for p in local.layout().flink_lib.iterdir()}
    assert f"flink-sql-connector-kafka-{v['FLINK_KAFKA_CONNECTOR_VERSION']}.jar" in names
    assert f"flink-dist-{v['FLINK_VERSION']}.jar" in names
    plugin = {p.name for p in (local.layout().flink_plugins / "s3-fs-hadoop").iterdir()}
    assert plugin == {f"flink-s3-fs-hadoop-{v['FLINK_FORMATS_VERSION']}.jar"}


def test_flink_runs_on_the_pinned_java(settings):
    from sensorops.platform.layout import flink_java_home
    from sensorops.versions import versions

    java = flink_java_home() / "bin" / "java"
    for pid in platform_pids()["flink"]:
        process = psutil.Process(pid)
        assert Path(process.exe()) == java.resolve(), process.cmdline()[:3]
        # Flink passes -Xms equal to -Xmx; the platform's later -Xms wins, so an idle JVM can give its heap back.
        assert [flag for flag in process.cmdline() if flag.startswith("-Xms")][-1] == "-Xms128m"
    jvm = requests.get(f"{settings.flink_rest_url}/jobmanager/environment", timeout=10).json()["jvm"]
    assert jvm["version"].rpartition(" - ")[2].split("/")[0] == versions()["FLINK_JAVA_VERSION"], jvm["version"]


@pytest.mark.lifecycle
def test_down_stops_everything_and_up_keeps_the_data(settings, unique):
    client = storage.client(settings)
    client.put_object(config.ARCHIVE_BUCKET, f"smoke/lifecycle-{unique}", io.BytesIO(b"kept"), 4)
    home = str(local.layout().home)
    job = stream.StreamJobConfig.scratch("test", unique, archive=False, aggregates=False)
    flink.wait_running(stream.submit(job)[0])

    down = sensorops("platform", "down")
    assert down.returncode == 0, down.stderr
    savepoint = flink.resume_point(job.name)
    assert savepoint.startswith(f"s3://{config.CHECKPOINT_BUCKET}/savepoints/") and job.name in down.stdout
    assert local.ports_in_use() == {}
    leftovers = [p.info for p in psutil.process_iter(["pid", "cmdline"]) if home in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []
    assert sensorops("platform", "status").returncode == 1

    result = sensorops("platform", "up")
    assert result.returncode == 0, result.stderr
    assert client.get_object(config.ARCHIVE_BUCKET, f"smoke/lifecycle-{unique}").read() == b"kept"
    job_id, started = stream.submit(job)  # resumes from the savepoint `down` took
    try:
        assert started and flink.status(job_id=job_id).state in flink.ACTIVE_STATES
        assert flink.jobs(job.name)[0]["jid"] == job_id and flink.resume_point(job.name) == ""
        assert _restored_from(job_id) == savepoint
    finally:
        stream.remove(job)


def _restored_from(job_id: str) -> str:
    """The savepoint or checkpoint a job was started from, as Flink reports it."""
    restored = wait_until(lambda: flink.checkpoints(job_id).get("latest", {}).get("restored"), timeout=90, interval=1)
    return restored["external_path"]
