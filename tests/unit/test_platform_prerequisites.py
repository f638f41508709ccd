"""Missing prerequisites get a message that says what to install."""

from __future__ import annotations

import pytest

from sensorops.errors import UserError
from sensorops.platform import install, local


def test_missing_java_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="Java is not installed"):
        local.check_java()


def test_missing_maven_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="Maven is not installed"):
        install._mvn_copy("kafka", tmp_path / "jars")


def test_java_on_this_machine_is_new_enough():
    assert "version" in local.check_java()


def test_platform_without_its_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "EXTRA_MODULES", (*local.EXTRA_MODULES, "sensorops_no_such_module"))
    with pytest.raises(UserError, match=r"needs the `platform` extra \(missing: sensorops_no_such_module\)"):
        local.require_extra()
    monkeypatch.undo()
    local.require_extra()  # this checkout has everything
