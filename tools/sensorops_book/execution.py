"""Run the notebooks with papermill, with the platform's settings in the kernel's environment.

papermill rather than jupyter-book's own execution: the tests and `make notebooks` run each notebook once, with
parameters, and keep the executed copy; the book then renders those copies (`execute_notebooks: "off"`). A failure
is reported as the failing cell, its code and the end of the traceback, which is what a reader acts on.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensorops import config
from sensorops.errors import UserError
from sensorops_book import exercises
from sensorops_book.layout import REPO, Layout, notebook_sources

log = logging.getLogger(__name__)

RAISES_TAG = "raises-exception"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
CELL_TIMEOUT_S = 900
SMOKE: dict[str, dict[str, Any]] = {
    "03_train_models_mlflow": {"MODELS": "random_forest,isolation_forest", "MAX_SEARCH_ROWS": 10_000},
    "04_orchestrate_airflow": {"MODELS": "random_forest"},
    "05_score_stream_alerts": {"DURATION_S": 75, "MOVE_AT_S": 20},
    "06_monitor_drift_retrain": {"WINDOW_MIN": 5, "MODELS": "random_forest"},
    "08_measure_performance": {"GENERATE_EVENTS": 100_000, "STREAM_EVENTS": 150_000, "STREAM_ROUNDS": 1},
}
"""The smoke size `make test` runs (`notebooks --smoke`): fewer models and a shorter live run, the same code path.
A notebook not named here runs at its default size, which is already small."""


class NotebookFailed(UserError):
    """A notebook raised an error while papermill executed it."""


@dataclass(frozen=True)
class Execution:
    """One executed notebook."""

    source: Path
    output: Path
    seconds: float
    stub_checks: dict[str, str] = field(default_factory=dict)
    """What each exercise's check said about the stub, by exercise label."""


QUIET_KERNEL = {"PYTHONWARNINGS": "ignore:IProgress not found"}
"""`import mlflow` imports `tqdm.auto`, which warns in every kernel without ipywidgets; nothing here draws a progress
bar in a page (the library turns MLflow's off), so the warning is noise on every page that trains or scores."""


def platform_environment() -> dict[str, str]:
    """The platform's settings as environment variables, without empty values (which would override defaults), and
    `QUIET_KERNEL`."""
    return {**{k: v for k, v in config.export_environment().items() if v}, **QUIET_KERNEL}


def execute(
    source: Path,
    output_dir: Path = REPO.executed_dir,
    parameters: Mapping[str, Any] | None = None,
    cell_timeout_s: int = CELL_TIMEOUT_S,
) -> Execution:
    """Run one notebook with papermill into `output_dir`; raise `NotebookFailed` naming the failing cell.

    Each hands-on exercise runs its stub, its check on the stub (which must fail), then its solution and the check
    again (`exercises.with_solutions`); the executed copy shows the stub and the passing check."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / source.name
    started = time.monotonic()
    log.info("executing %s -> %s", source.name, output)
    try:
        prepared = exercises.with_solutions(nbformat.read(source, as_version=4))
    except ValueError as exc:
        raise NotebookFailed(f"{source.name}: {exc}") from None
    try:
        with config.temporary_environment(platform_environment()):  # the kernel inherits them
            papermill.execute_notebook(
                prepared,
                str(output),
                parameters=dict(parameters or {}),
                kernel_name="python3",
                cwd=str(source.parent),
                progress_bar=False,
                execution_timeout=cell_timeout_s,
            )
    except PapermillExecutionError:
        # papermill fails on any error output, even in a cell tagged `raises-exception` (an error the reader is
        # meant to see, which nbclient runs past). Undo its error markers and fail only on a real error.
        nb = nbformat.read(output, as_version=4)
        nb.cells = [c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.metadata.get("tags", [])]
        nbformat.write(nb, output)
        if failure := first_failure(nb):
            raise NotebookFailed(failure_message(source, output, *failure)) from None
    nb = nbformat.read(output, as_version=4)
    said = exercises.stub_messages(nb)
    if wrong := exercises.settle(nb):
        raise NotebookFailed(f"{source.name}: " + "\n".join(wrong) + f"\nThe executed copy is {output}")
    nbformat.write(nb, output)
    return Execution(source=source, output=output, seconds=time.monotonic() - started, stub_checks=said)


def first_failure(nb: Any) -> tuple[int, Any, dict] | None:
    """The first code cell that failed and was not meant to (not tagged `raises-exception`), with its error."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or RAISES_TAG in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return index, cell, out
        if cell.metadata.get("papermill", {}).get("exception"):
            return index, cell, {"ename": "CellExecutionError", "evalue": "the cell did not finish", "traceback": []}
    return None


def failure_message(source: Path, output: Path, index: int, cell: Any, error: Mapping[str, Any]) -> str:
    """The failing cell, its code and the error, in a few lines a reader can act on."""
    code = "\n".join("    " + line for line in str(cell.source).splitlines()[:15])
    traceback = error.get("traceback") or []
    tail = _strip_ansi("\n".join(traceback[-6:]))
    return (
        f"{source.name} failed in cell [{cell.get('execution_count')}] (cell index {index}):\n"
        f"{code}\n"
        f"{error.get('ename')}: {error.get('evalue')}\n"
        f"--- the end of the traceback ---\n{tail}\n"
        f"The executed copy, with every output up to the failure, is {output}"
    )


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def smoke_parameters(source: Path, parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The notebook's smoke-size parameters, with `parameters` on top."""
    return {**SMOKE.get(source.stem, {}), **(parameters or {})}


def execute_all(
    layout: Layout = REPO,
    parameters: Mapping[str, Any] | None = None,
    smoke: bool = False,
) -> list[Execution]:
    """Execute the notebooks in order; stop at the first failure (later chapters build on earlier ones)."""
    runs = []
    for source in notebook_sources(layout):
        runs.append(execute(source, layout.executed_dir, smoke_parameters(source, parameters) if smoke else parameters))
        log.info("%s ran in %.0f s", source.name, runs[-1].seconds)
    return runs
