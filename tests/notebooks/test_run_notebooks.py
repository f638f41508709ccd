"""Every notebook runs, in filename order, through papermill at its smoke size (`sensorops_book.SMOKE`) against the
live platform. The executed copies land in `_build/notebooks/`, where the book test and a person debugging find them.

Each hands-on exercise runs in the same run: its stub, its check on the stub (which must fail, saying what is wrong),
its solution and its check again (`sensorops_book.exercises`)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

import sensorops_book as book
from sensorops_book import exercises

pytestmark = pytest.mark.notebooks

NOTEBOOKS = book.notebook_sources()


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no chapter notebooks (NN_name.ipynb) in {book.REPO.notebooks_dir}"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(source: Path) -> None:
    try:
        run = book.execute(source, book.REPO.executed_dir, book.smoke_parameters(source))
    except book.NotebookFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    nb = nbformat.read(run.output, as_version=4)
    assert book.first_failure(nb) is None
    labels = {e.label for e in exercises.exercises(nbformat.read(source, as_version=4))}
    assert set(run.stub_checks) == labels and all(run.stub_checks.values()), f"checks on the stubs: {run.stub_checks}"
    skipped = [
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() and c.execution_count is None
    ]
    assert not skipped, f"{source.name}: code cells {skipped} did not run"
    noise = [(i, "".join(o.text)[:200]) for i, c in enumerate(nb.cells) for o in c.get("outputs", [])
             if o.output_type == "stream" and o.name == "stderr" and "Warning" in "".join(o.text)]  # fmt: skip
    assert not noise, f"{source.name}: warnings in the page: {noise}"
    assert book.executed_problem(source, run.output) is None
