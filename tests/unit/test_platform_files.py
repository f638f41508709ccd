"""Issue 13: the platform's home is 700 and every file that can hold a secret is created 600, never loosened."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from sensorops import config
from sensorops.platform import install, layout, seaweedfs

FLAGS = {
    "s3": "s3.port",
    "s3-grpc": "s3.port.grpc",
    "s3-master": "master.port",
    "s3-master-grpc": "master.port.grpc",
    "s3-volume": "volume.port",
    "s3-volume-grpc": "volume.port.grpc",
    "s3-filer": "filer.port",
    "s3-filer-grpc": "filer.port.grpc",
}
"""Each SeaweedFS port in `layout.PORTS` and the `weed server` flag that sets it."""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The loosest umask: modes must come from how the files are created, not from the caller's umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_write_private_creates_600_and_replaces_a_readable_file(tmp_path, open_umask):
    fresh, old = tmp_path / "fresh.conf", tmp_path / "old.conf"
    config.write_private(fresh, "key=1\n")
    old.write_text("key=0\n")
    old.chmod(0o644)
    config.write_private(old, "key=2\n")
    assert (mode(fresh), fresh.read_text()) == (0o600, "key=1\n")
    assert (mode(old), old.read_text()) == (0o600, "key=2\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.conf", "old.conf"]  # no temporary file left


def test_private_dir_makes_every_missing_parent_700_and_tightens_an_existing_one(tmp_path, open_umask):
    config.private_dir(tmp_path / "home" / "data" / "s3")
    assert {mode(p) for p in (tmp_path / "home", tmp_path / "home" / "data", tmp_path / "home" / "data" / "s3")} == {
        0o700
    }
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    config.private_dir(loose)
    assert mode(loose) == 0o700


@pytest.fixture
def platform_home(tmp_path, monkeypatch) -> layout.Layout:
    """A platform home and `.env` in tmp_path, so nothing touches the checkout's."""
    monkeypatch.setenv("SENSOROPS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(config, "ENV_FILE", tmp_path / ".env")
    return layout.Layout(tmp_path / "home")


def test_credentials_are_created_600_with_the_seaweedfs_keys_and_kept(platform_home, open_umask):
    first = install.ensure_credentials()
    assert mode(config.ENV_FILE) == 0o600
    assert all(len(first[key]) == 48 for key in seaweedfs.JWT_KEYS)
    assert install.ensure_credentials() == first
    config.write_private(config.ENV_FILE, "AWS_ACCESS_KEY_ID=mine\n")  # an older .env: only the missing keys are added
    assert install.ensure_credentials()["AWS_ACCESS_KEY_ID"] == "mine"
    assert config.ENV_FILE.read_text().startswith("AWS_ACCESS_KEY_ID=mine\n")


def test_render_writes_only_owner_only_files_and_directories(platform_home, open_umask):
    install.render(platform_home, install.ensure_credentials())
    paths = [platform_home.home, *platform_home.home.rglob("*")]
    loose = {str(p.relative_to(platform_home.home.parent)): oct(mode(p)) for p in paths if mode(p) & 0o077}
    assert not loose
    assert {mode(p) for p in paths if p.is_file()} == {0o600}
    assert "umask=077" in platform_home.supervisor_conf.read_text()


def test_seaweedfs_runs_locked_down_on_the_platform_ports_only(platform_home):
    creds = install.ensure_credentials()
    install.render(platform_home, creds)
    conf = platform_home.supervisor_conf.read_text()
    command = re.search(r"command=(\S*/weed .*)", conf).group(1).split()
    assert command[1:3] == [f"-config_dir={platform_home.seaweedfs_conf}", "server"]  # no admin server, no worker
    assert {"-disableHttp", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"} <= set(command)
    flags = dict(flag.lstrip("-").split("=", 1) for flag in command[3:] if "=" in flag)
    weed_ports = {name: port for name, port in layout.PORTS.items() if name.startswith("s3")}
    assert set(weed_ports) == set(FLAGS), "a SeaweedFS port in PORTS without its flag here, or the reverse"
    assert {FLAGS[name]: str(port) for name, port in weed_ports.items()}.items() <= flags.items()
    security = (platform_home.seaweedfs_conf / "security.toml").read_text()
    assert all(creds[key] in security for key in seaweedfs.JWT_KEYS)
    assert "${" not in security and mode(platform_home.seaweedfs_conf / seaweedfs.KEY) == 0o600


def test_flink_runs_on_java_21_without_flags_for_modules_it_lacks(platform_home):
    install.render(platform_home, install.ensure_credentials())
    conf = (platform_home.flink_conf / "config.yaml").read_text()
    java_home = layout.flink_java_home()
    assert f"env.java.home: {java_home}\n" in conf
    modules = set(re.search(r'^MODULES="([^"]*)"', (java_home / "release").read_text(), re.M).group(1).split())
    opts = re.search(r"^env\.java\.opts\.all: (.*)$", conf, re.M).group(1).split()
    named = [flag.split("=")[1].split("/")[0] for flag in opts if flag.startswith(("--add-exports=", "--add-opens="))]
    assert named and set(named) <= modules
    assert opts[-2:] == ["-Xms128m", "-XX:G1PeriodicGCInterval=60000"]
