"""Notebook and book tests: papermill runs every notebook in filename order, then the book is built from the
executed copies and opened in headless Chromium.

pytest collects files alphabetically, which would put test_book.py first; the hook below runs the notebooks
first, in filename order, and the book last, so `pytest -m notebooks tests/notebooks` does the whole thing in one go.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

ORDER = ("test_run_notebooks.py", "test_book.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return ORDER.index(name) if name in ORDER else -1

    items.sort(key=rank)  # stable: keeps the parametrised order (filename order) within each file


def chromium_binary() -> str:
    """Debian's `chromium`; fail (not skip) with the install command if it is missing."""
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    pytest.fail("Chromium is not installed; the book test needs it: apt-get install -y chromium", pytrace=False)


def chromium_dom(url: str, budget_ms: int = 5000, timeout_s: float = 120) -> tuple[str, str]:
    """The DOM of a page after its scripts ran (virtual time), and Chromium's log (console messages included)."""
    with tempfile.TemporaryDirectory(prefix="sensorops-chromium-") as profile:
        command = [
            chromium_binary(),
            "--headless",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--window-size=1280,2000",
            "--dump-dom",
            url,
        ]
        if os.geteuid() == 0:
            command.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    assert result.returncode == 0, f"chromium exited {result.returncode} on {url}:\n{result.stderr[-2000:]}"
    return result.stdout, result.stderr


@pytest.fixture(scope="session")
def chromium() -> Callable[[str], tuple[str, str]]:
    """`chromium(url)`: the rendered DOM of a page and Chromium's log."""
    chromium_binary()
    return chromium_dom


@pytest.fixture(scope="session")
def dom_dir() -> Path:
    """Where the tests keep each page's rendered DOM, for debugging a failure."""
    import sensorops_book as book

    path = book.REPO.root / "_build" / "book-dom"
    path.mkdir(parents=True, exist_ok=True)
    return path
