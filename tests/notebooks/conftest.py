"""Notebook and book tests: papermill runs every notebook in filename order, then the book is built from the
executed copies and opened in headless Chromium (the `chromium` fixture of tests/conftest.py).

pytest collects files alphabetically, which would put test_book.py first; the hook below runs the notebooks
first, in filename order, and the book last, so `pytest -m notebooks tests/notebooks` does the whole thing in one go.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ORDER = ("test_run_notebooks.py", "test_book.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return ORDER.index(name) if name in ORDER else -1

    items.sort(key=rank)  # stable: keeps the parametrised order (filename order) within each file


@pytest.fixture(scope="session")
def dom_dir() -> Path:
    """Where the tests keep each page's rendered DOM, for debugging a failure."""
    import sensorops_book as book

    path = book.REPO.root / "_build" / "book-dom"
    path.mkdir(parents=True, exist_ok=True)
    return path
