"""Fixtures the unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorops.platform import layout, prometheus


@pytest.fixture(scope="session")
def promtool() -> Path:
    """Prometheus' `promtool`, installed the way `make up` installs it (once, under its lock)."""
    lay = layout.layout()
    prometheus.install(lay)
    return prometheus.binary(lay, "promtool")
