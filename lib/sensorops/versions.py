"""The platform's pinned versions, read from `deploy/local/versions.env` (the one place they are written)."""

from __future__ import annotations

from functools import cache

from sensorops.config import ROOT, read_env_file

VERSIONS_FILE = ROOT / "deploy" / "local" / "versions.env"


@cache
def versions() -> dict[str, str]:
    """All pinned versions, e.g. `versions()["FLINK_VERSION"]`."""
    return read_env_file(VERSIONS_FILE)
