"""Integration tests run against the live platform that `make up` starts; they fail (never skip) when it is down."""

from __future__ import annotations

import uuid

import pytest

from sensorops import config
from sensorops.platform import require


@pytest.fixture(scope="session")
def settings() -> config.Settings:
    require()  # raises ServiceUnavailable naming what is down and "run `make up`"
    return config.load()


@pytest.fixture
def unique() -> str:
    """A suffix that keeps topics, objects and runs of one test apart from every other run."""
    return uuid.uuid4().hex[:10]
