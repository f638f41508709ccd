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

This module is also a small Sphinx extension (listed in `_config.yml`): it adds a launch button that opens the
page's notebook in the local JupyterLab (`make lab`), ships plotly.js with the book and loads it on the pages that
have figures.

Command line: `python -m sensorops.book notebooks|build|lab`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensorops import config
from sensorops.errors import UserError

log = logging.getLogger(__name__)

ROOT = config.ROOT

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"
PLOTLY_DIV_CLASS = "plotly-graph-div"
RAISES_TAG = "raises-exception"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
CELL_TIMEOUT_S = 900
LAB_PORT = 8899  # not 8888: the SeaweedFS filer listens there
LAB_URL = f"http://127.0.0.1:{LAB_PORT}"


class NotebookFailed(UserError):
    """A notebook raised an error while papermill executed it."""


@dataclass(frozen=True)
class Layout:
    """Where the book's sources and build products live, relative to a repository root."""

    root: Path = ROOT

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def pages_dir(self) -> Path:
        return self.root / "book"

    @property
    def config_file(self) -> Path:
        return self.root / "_config.yml"

    @property
    def toc_file(self) -> Path:
        return self.root / "_toc.yml"

    @property
    def executed_dir(self) -> Path:
        """papermill's output: the executed copies the book renders."""
        return self.root / "_build" / "notebooks"

    @property
    def staging_dir(self) -> Path:
        """The book's sources with the executed notebooks in place; jupyter-book builds here."""
        return self.root / "_build" / "book"

    @property
    def html_dir(self) -> Path:
        return self.staging_dir / "_build" / "html"


REPO = Layout()


@dataclass(frozen=True)
class Execution:
    """One executed notebook."""

    source: Path
    output: Path
    seconds: float


# ---------------------------------------------------------------------------------------------------------------
# Discovery


def notebook_sources(layout: Layout = REPO) -> list[Path]:
    """The chapter notebooks (`NN_name.ipynb`), in filename order, which is reading and test order."""
    folder = layout.notebooks_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def toc_entries(layout: Layout = REPO) -> list[str]:
    """Every `file:` of `_toc.yml` (root first), in reading order, without suffix."""
    import yaml  # PyYAML comes with jupyter-book

    toc = yaml.safe_load(layout.toc_file.read_text())
    entries = [str(toc["root"])]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                entries.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [re.sub(r"\.(ipynb|md)$", "", e) for e in entries]


def toc_notebooks(layout: Layout = REPO) -> list[str]:
    """The TOC entries under `notebooks/`, e.g. `notebooks/01_generate_sensor_data`."""
    return [e for e in toc_entries(layout) if e.startswith("notebooks/")]


# ---------------------------------------------------------------------------------------------------------------
# Execution


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (the kernel inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def platform_environment() -> dict[str, str]:
    """The platform's settings as environment variables, without empty values (which would override defaults)."""
    return {k: v for k, v in config.export_environment().items() if v}


def execute(
    source: Path,
    output_dir: Path = REPO.executed_dir,
    parameters: Mapping[str, Any] | None = None,
    cell_timeout_s: int = CELL_TIMEOUT_S,
) -> Execution:
    """Run one notebook with papermill into `output_dir`; raise `NotebookFailed` naming the failing cell."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output_dir.mkdir(parents=True, exist_ok=True)
    output = output_dir / source.name
    started = time.monotonic()
    log.info("executing %s -> %s", source.name, output)
    try:
        with _environment(platform_environment()):
            papermill.execute_notebook(
                str(source),
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
    return Execution(source=source, output=output, seconds=time.monotonic() - started)


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


def execute_all(
    layout: Layout = REPO,
    parameters: Mapping[str, Any] | None = None,
) -> list[Execution]:
    """Execute the notebooks in order; stop at the first failure (later chapters build on earlier ones)."""
    runs = []
    for source in notebook_sources(layout):
        runs.append(execute(source, layout.executed_dir, parameters))
        log.info("%s ran in %.0f s", source.name, runs[-1].seconds)
    return runs


# ---------------------------------------------------------------------------------------------------------------
# Staging


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
        c.source
        for c in nb.cells
        if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])
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


def plotly_js_path() -> Path:
    """The plotly.js bundled with the installed plotly package (the version that wrote the figures)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.exists():
        raise UserError(f"plotly.js not found at {path}; reinstall plotly.")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Build


def build(layout: Layout = REPO) -> Path:
    """Stage, then build the HTML book with warnings as errors; return the path of its index page."""
    stage(layout)
    staging_dir = layout.staging_dir
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(staging_dir), "--builder", "html", "--warningiserror", "--keep-going"]
    log.info("building the book: %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, cwd=layout.root)
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


# ---------------------------------------------------------------------------------------------------------------
# JupyterLab


def lab_command(port: int = LAB_PORT) -> list[str]:
    """The JupyterLab command `make lab` runs: local only, rooted at the repository, opening `notebooks/`."""
    command = [
        str(Path(sys.executable).parent / "jupyter"),
        "lab",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",  # the launch buttons in the book point at this port
        "--no-browser",
        f"--ServerApp.root_dir={ROOT}",
        "--ServerApp.default_url=/lab/tree/notebooks",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI machines often run as root
    return command


# ---------------------------------------------------------------------------------------------------------------
# Sphinx extension


def _add_lab_button(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """On a notebook page, a launch button that opens that notebook in the local JupyterLab."""
    if not pagename.startswith("notebooks/") or "header_buttons" not in context:
        return
    url = f"{app.config.sensorops_lab_url.rstrip('/')}/lab/tree/{pagename}.ipynb"
    context["header_buttons"].append(
        {
            "type": "group",
            "tooltip": "Launch interactive content",
            "icon": "fas fa-rocket",
            "label": "launch-buttons",
            "buttons": [
                {
                    "type": "link",
                    "text": "JupyterLab",
                    "tooltip": "Open in your local JupyterLab (start it with `make lab`)",
                    "icon": "_static/images/logo_jupyterhub.svg",
                    "url": url,
                    "label": "launch-jupyterlab-button",
                }
            ],
        }
    )


def _add_plotly_js(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Load plotly.js, before the page's figures, on the pages that have figures."""
    if PLOTLY_DIV_CLASS in context.get("body", ""):
        app.builder.add_js_file(PLOTLY_JS, priority=200)  # this page only (reverted for the next page)


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Drop repeated inline scripts: sphinx-thebe (loaded by jupyter-book even with thebe off) registers its
    `const THEBE_JS_URL = ...` twice, and the second copy is a JavaScript error on every page."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = sorted(unique, key=lambda js: getattr(js, "priority", 500))


def _copy_plotly_js(app: Any, exception: Exception | None) -> None:
    """Ship plotly.js with the book. (Not via the source `_static/`: jupyter-book would load it on every page.)"""
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plotly_js_path(), static / PLOTLY_JS)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point."""
    app.add_config_value("sensorops_lab_url", LAB_URL, "html")
    app.connect("html-page-context", _add_lab_button, priority=502)
    app.connect("html-page-context", _add_plotly_js)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _copy_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isupper():
            raise UserError(f"--param takes NAME=VALUE with an UPPER_CASE name, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sensorops.book notebooks|build|lab`."""
    parser = argparse.ArgumentParser(prog="python -m sensorops.book", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    nbs = sub.add_parser("notebooks", help="execute every notebook in order into _build/notebooks/")
    nbs.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    sub.add_parser("build", help="build the HTML book from the executed notebooks")
    lab = sub.add_parser("lab", help="JupyterLab on the notebooks, with the platform's settings")
    lab.add_argument("--port", type=int, default=LAB_PORT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # papermill imports gcsfs, whose google dependencies warn about Python 3.11's end of life on every run
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    try:
        if args.command == "notebooks":
            runs = execute_all(parameters=_parse_parameters(args.param))
            if not runs:
                raise UserError(f"No notebooks found in {REPO.notebooks_dir}")
            log.info("executed %d notebooks into %s", len(runs), REPO.executed_dir)
        elif args.command == "build":
            started = time.monotonic()
            index = build()
            log.info("book built in %.0f s: %s", time.monotonic() - started, index)
        elif args.command == "lab":
            env = {**os.environ, **platform_environment()}
            os.execve(lab_command(args.port)[0], lab_command(args.port), env)
    except UserError as exc:
        print(f"sensorops.book {args.command}: error: {exc}", file=sys.stderr)  # one message, no traceback
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
