"""Execute the notebooks with papermill and build the Jupyter Book from the executed copies.

How the book is built (nothing runs twice):

1. `execute()` runs every notebook in `notebooks/` in filename order with papermill, with its default (small)
   parameters, into `_build/notebooks/`. The tests in `tests/notebooks/` call the same function.
2. `stage()` copies the book's sources (`_config.yml`, `_toc.yml`, `book/`) into `_build/book/` and puts the
   *executed* copy of each notebook where `_toc.yml` expects `notebooks/NN_....ipynb`. The TOC therefore names the
   notebooks by their place in the repository, and the book never sees an unexecuted notebook. While staging,
   each plotly figure (the `application/vnd.plotly.v1+json` output that plotly's default renderer writes in
   Jupyter) becomes HTML that draws it with the plotly.js copied from the plotly package: no CDN, no require.js,
   the figures work offline.
3. `build()` runs `jupyter-book build` on the staging folder with warnings as errors (`_config.yml` sets
   `execute_notebooks: "off"`). The HTML lands in `_build/book/_build/html/`.

`sensorops_book.sphinx_extension` is a small Sphinx extension (listed in `_config.yml`): it numbers exercises per
chapter, shows links to the reader's own machine (127.0.0.1) as addresses rather than links, ships plotly.js with
the book and loads it on the pages that have figures. `sensorops_book.checks` holds what the tests require of the
built pages and the executed notebooks (no raw directives, no noise, nothing unpublishable).

Command line: `PYTHONPATH=tools python -m sensorops_book notebooks|build|lab` (what `make notebooks`, `make book`
and `make lab` run).

Why this lives in `tools/` and not in `lib/sensorops/`: it is build tooling for the book, not something a pod or
the Airflow worker runs, and it needs papermill, jupyter-book and JupyterLab, which the cluster image leaves out
(`pip install .` without the `book` extra). It depends on the library (`sensorops.config` for the repository root
and the platform's settings); the library never imports it. It is not installed: `make` and the Sphinx build put
`tools/` on the path, and pytest does through `pythonpath` in pyproject.toml.

Modules, one concern each: `layout` (where sources and build products live; the TOC), `execution` (papermill),
`exercises` (the hands-on exercises: each runs its stub, its check, its solution and the check again in that one run),
`staging` (the staged sources, plotly conversion, the `jupyter-book build` run), `sphinx_extension`, `checks` (what
the tests require of the built pages), `lab` (the JupyterLab extensions `make lab` needs), and the command line in
`__main__`. The names below are the API the tests and `make` use.
"""

from __future__ import annotations

from sensorops_book.execution import (
    SMOKE,
    Execution,
    NotebookFailed,
    execute,
    execute_all,
    failure_message,
    first_failure,
    smoke_parameters,
)
from sensorops_book.layout import (
    LAB_PORT,
    LAB_URL,
    PLOTLY_DIV_CLASS,
    PLOTLY_JS,
    PLOTLY_MIME,
    REPO,
    ROOT,
    Layout,
    notebook_sources,
    toc_entries,
    toc_notebooks,
)
from sensorops_book.staging import build, executed_problem, plotly_outputs, plotly_to_html, stage

__all__ = [
    "LAB_PORT",
    "LAB_URL",
    "PLOTLY_DIV_CLASS",
    "PLOTLY_JS",
    "PLOTLY_MIME",
    "REPO",
    "ROOT",
    "SMOKE",
    "Execution",
    "Layout",
    "NotebookFailed",
    "build",
    "execute",
    "execute_all",
    "executed_problem",
    "failure_message",
    "first_failure",
    "notebook_sources",
    "plotly_outputs",
    "plotly_to_html",
    "smoke_parameters",
    "stage",
    "toc_entries",
    "toc_notebooks",
]
