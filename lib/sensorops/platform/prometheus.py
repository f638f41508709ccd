"""Prometheus and its Pushgateway from Debian 12, unpacked into the platform's folder: no system service, no
root-owned files.

`apt-get install prometheus` would start a system service; instead `apt-get download` fetches the packages and
the `libjs-*` and font packages Prometheus' classic UI reads (its `web/static/` links to them), and `dpkg-deb -x`
unpacks them all into one tree, where the UI's relative links resolve. `promtool` comes in the same package.
moment-timezone's per-zone data (about 210 MB, not read by the UI) is removed after unpacking; what stays is about
110 MB.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
from pathlib import Path

from sensorops import config
from sensorops.errors import UserError
from sensorops.platform.layout import Layout
from sensorops.versions import versions

log = logging.getLogger(__name__)

PACKAGE = "prometheus"
PUSHGATEWAY = "prometheus-pushgateway"
"""Where Flink's reporter pushes its metrics: the pull reporter would listen on every interface (it takes a port,
not an address), the Pushgateway listens on loopback."""
UI_PACKAGES = ("libjs-", "fonts-")
"""Prefixes of the dependencies the classic UI needs; the others (libc, adduser, ...) are the system's."""
UNUSED = ("usr/share/javascript/moment-timezone/data", "usr/share/doc", "usr/share/man", "etc/init.d")


def binary(lay: Layout, name: str = "prometheus") -> Path:
    """`prometheus`, `promtool` or `prometheus-pushgateway` in the unpacked tree."""
    return lay.prometheus_root / "usr" / "bin" / name


def web_assets(lay: Layout) -> Path:
    """The classic UI's templates and static files (`--web.local-assets`)."""
    return lay.prometheus_root / "usr" / "share" / "prometheus" / "web"


def _apt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    apt = shutil.which(args[0])
    if not apt:
        raise UserError(f"{args[0]} is not available: Prometheus comes from Debian 12's `prometheus` package.")
    return subprocess.run([apt, *args[1:]], cwd=cwd, check=False, capture_output=True, text=True)


def packages() -> list[str]:
    """`prometheus`, the Pushgateway, and every package of their dependency closure that the classic UI reads."""
    only_depends = [f"--no-{kind}" for kind in ("recommends", "suggests", "conflicts", "breaks", "replaces")]
    only_depends += ["--no-enhances", "--no-pre-depends"]
    result = _apt("apt-cache", "depends", "--recurse", *only_depends, PACKAGE, PUSHGATEWAY)
    if result.returncode != 0:
        raise UserError(f"apt-cache does not know {PACKAGE} ({result.stderr.strip()}); is this Debian 12?")
    names = {line.strip() for line in result.stdout.splitlines() if line[:1].isalpha()}
    return [PACKAGE, PUSHGATEWAY, *sorted(n for n in names if n.startswith(UI_PACKAGES))]


def _download(names: list[str], into: Path) -> None:
    """`apt-get download`, after `apt-get update` when the lists are missing or stale (a security update moved on)."""
    for attempt in (1, 2):
        result = _apt("apt-get", "download", *names, cwd=into)
        if result.returncode == 0:
            return
        if attempt == 1 and os.geteuid() == 0:
            log.info("apt-get download failed; updating the package lists once")
            _apt("apt-get", "update", "-qq")
    raise UserError(f"apt-get could not download {', '.join(names)}: {result.stderr.strip()[-800:]}")


def install(lay: Layout) -> None:
    """Download and unpack Prometheus and its UI's packages, unless the pinned version is unpacked already.

    One process at a time (a lock file beside the tree): `make test` starts the platform while the unit tests, which
    need `promtool`, run, and two installs into the same staging folder removed each other's packages.
    """
    root, pinned = lay.prometheus_root, versions()
    wanted = f"{pinned['PROMETHEUS_VERSION']} pushgateway {pinned['PUSHGATEWAY_VERSION']}"
    marker = root / ".version"
    config.private_dir(root.parent)
    with open(root.with_name(root.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.exists() and marker.read_text() == wanted):
            _unpack(root, wanted, pinned)


def _unpack(root: Path, wanted: str, pinned: dict[str, str]) -> None:
    marker = root / ".version"
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "debs").mkdir(parents=True, mode=0o700)
    log.info("fetching Prometheus %s from Debian", wanted)
    _download(packages(), staging / "debs")
    debs = sorted((staging / "debs").glob("*.deb"))
    for package, key in ((PACKAGE, "PROMETHEUS_VERSION"), (PUSHGATEWAY, "PUSHGATEWAY_VERSION")):
        version = _field(next(d for d in debs if d.name.startswith(f"{package}_")), "Version")
        if version.split("+")[0].split("-")[0] != pinned[key]:
            raise UserError(f"Debian serves {package} {version}; versions.env pins {key}={pinned[key]}")
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging / "tree")], check=True, capture_output=True)
    for unused in UNUSED:
        shutil.rmtree(staging / "tree" / unused, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    (staging / "tree").rename(root)
    shutil.rmtree(staging)
    root.chmod(0o700)
    marker.write_text(wanted)


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout.strip()
