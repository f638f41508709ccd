"""Stage the book's sources with the executed notebooks, convert plotly figures, and run `jupyter-book build`.

The staged copy of a notebook differs from papermill's in one way: each plotly figure is HTML that draws itself with
the plotly.js shipped with the book (see `sphinx_extension`), instead of plotly's JSON, which myst-nb cannot render
and would warn about. Staging refuses to start unless every notebook in the TOC has an executed copy that finished
and matches the notebook's current code, so the book never shows stale or failed output.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sensorops.errors import UserError
from sensorops_book.execution import first_failure
from sensorops_book.layout import PLOTLY_MIME, REPO, Layout, toc_notebooks

log = logging.getLogger(__name__)


def executed_problem(source: Path, executed: Path) -> str | None:
    """Why `executed` cannot stand in for `source` in the book (missing, failed, stale), or None."""
    import nbformat

    hint = "Run the notebooks first: `make notebooks` (or `pytest -m notebooks tests/notebooks`)."
    if not executed.exists():
        return f"No executed copy of {source.name} at {executed}. {hint}"
    nb = nbformat.read(executed, as_version=4)
    if failure := first_failure(nb):
        index, _, error = failure
        return (
            f"The executed copy {executed} stopped with {error.get('ename')}: {error.get('evalue')} "
            f"in cell {index}. Fix the notebook, then run it again: `make notebooks`."
        )
    if _code_sources(nbformat.read(source, as_version=4)) != _code_sources(nb):
        return f"The executed copy {executed} is older than the notebook {source}. {hint}"
    return None


def _code_sources(nb: Any) -> list[str]:
    """Code cells' sources, ignoring the cell papermill injects for parameters."""
    return [
        c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
    ]


def plotly_html(figure: Mapping[str, Any]) -> str:
    """A figure as an HTML fragment that draws itself with a `Plotly` already on the page."""
    import plotly.io as pio

    return pio.to_html(
        dict(figure),
        include_plotlyjs=False,
        include_mathjax=False,
        full_html=False,
        default_width="100%",
        default_height=525,
        validate=False,
        config={"responsive": True},
    )


def plotly_to_html(nb: Any) -> int:
    """Turn every plotly output into offline HTML (replacing any CDN or require.js one); count the figures.

    The plotly JSON itself is dropped from the staged copy: myst-nb has no renderer for it and would warn.
    """
    count = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if PLOTLY_MIME in data:
                figure = data.pop(PLOTLY_MIME)
                data["text/html"] = plotly_html(json.loads(figure) if isinstance(figure, str) else figure)
                count += 1
    return count


def plotly_outputs(nb: Any) -> int:
    """How many plotly figures a notebook shows (outputs of cells the book does not remove)."""
    hidden = {"remove-output", "remove-cell"}
    return sum(
        PLOTLY_MIME in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code" and not hidden & set(cell.metadata.get("tags", []))
        for out in cell.get("outputs", [])
    )


def stage(layout: Layout = REPO) -> dict[str, int]:
    """Assemble the book's sources with the executed notebooks; return the plotly figure count per notebook."""
    import nbformat

    executed_dir, staging_dir = layout.executed_dir, layout.staging_dir
    problems = []
    notebooks = toc_notebooks(layout)
    for entry in notebooks:
        source = layout.root / f"{entry}.ipynb"
        if not source.exists():
            problems.append(f"_toc.yml lists {entry}.ipynb, which does not exist.")
        elif problem := executed_problem(source, executed_dir / source.name):
            problems.append(problem)
    if problems:
        raise UserError("Cannot build the book:\n" + "\n".join(f"- {p}" for p in problems))

    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    (staging_dir / "notebooks").mkdir(parents=True)
    shutil.copy2(layout.config_file, staging_dir / "_config.yml")
    shutil.copy2(layout.toc_file, staging_dir / "_toc.yml")
    shutil.copytree(layout.pages_dir, staging_dir / "book")

    figures = {}
    for entry in notebooks:
        name = Path(entry).name + ".ipynb"
        nb = nbformat.read(executed_dir / name, as_version=4)
        figures[entry] = plotly_to_html(nb)
        nbformat.write(nb, staging_dir / "notebooks" / name)
    log.info("staged %d notebooks in %s (%d plotly figures)", len(notebooks), staging_dir, sum(figures.values()))
    return figures


def build(layout: Layout = REPO) -> Path:
    """Stage, then build the HTML book with warnings as errors; return the path of its index page."""
    stage(layout)
    staging_dir = layout.staging_dir
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(staging_dir), "--builder", "html", "--warningiserror", "--keep-going"]
    log.info("building the book: %s", " ".join(command))
    result = subprocess.run(command, check=False, capture_output=True, text=True, cwd=layout.root)
    output = result.stdout + result.stderr
    (staging_dir / "build.log").write_text(output)
    index = layout.html_dir / "index.html"
    if result.returncode != 0 or not index.exists():
        problems = [line for line in output.splitlines() if re.search(r"WARNING|ERROR|Error|Exception", line)]
        raise UserError(
            f"The book build failed (exit {result.returncode}); full log: {staging_dir / 'build.log'}\n"
            + "\n".join(problems[-40:] or output.splitlines()[-40:])
        )
    return index
