"""tools/sensorops_book without a kernel or services: TOC parsing, failure detection, staleness, plotly conversion."""

from __future__ import annotations

from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

import sensorops_book as book
from sensorops.errors import UserError
from sensorops_book import checks, lab
from sensorops_book.__main__ import lab_command, parse_parameters
from sensorops_book.layout import LOCAL_URL
from sensorops_book.sphinx_extension import number_per_chapter, unlink_local


def notebook(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def error_cell(source: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = tags or []
    cell.outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=["tb"])]
    cell.execution_count = 1
    return cell


def test_toc_entries_in_reading_order(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - caption: A\n    chapters:\n      - file: notebooks/00_a\n      - file: notebooks/01_b.ipynb\n"
        "        sections:\n          - file: book/sub\n  - caption: B\n    chapters:\n      - file: book/glossary\n"
    )
    layout = book.Layout(tmp_path)
    assert book.toc_entries(layout) == ["book/intro", "notebooks/00_a", "notebooks/01_b", "book/sub", "book/glossary"]
    assert book.toc_notebooks(layout) == ["notebooks/00_a", "notebooks/01_b"]


def test_notebook_sources_are_the_numbered_ones_in_order(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    for name in ("02_c.ipynb", "00_a.ipynb", "scratch.ipynb", "01_b.ipynb", "1_bad.ipynb"):
        (tmp_path / "notebooks" / name).write_text("{}")
    assert [p.name for p in book.notebook_sources(book.Layout(tmp_path))] == ["00_a.ipynb", "01_b.ipynb", "02_c.ipynb"]


def test_first_failure_ignores_errors_meant_to_be_seen() -> None:
    shown = error_cell("raise ValueError('on purpose')", tags=["raises-exception"])
    assert book.first_failure(notebook(shown)) is None
    real = error_cell("1/0")
    index, cell, error = book.first_failure(notebook(shown, nbformat.v4.new_code_cell("x = 1"), real))
    assert index == 2 and cell is real and error["ename"] == "ValueError"


def test_first_failure_catches_a_cell_that_did_not_finish() -> None:
    cell = nbformat.v4.new_code_cell("while True: pass")
    cell.metadata["papermill"] = {"exception": True}
    assert book.first_failure(notebook(cell))[0] == 0


def test_failure_message_names_cell_code_and_error(tmp_path: Path) -> None:
    cell = error_cell("produce(events)")
    message = book.failure_message(Path("01_x.ipynb"), tmp_path / "01_x.ipynb", 7, cell, cell.outputs[0])
    assert "01_x.ipynb failed in cell [1] (cell index 7)" in message
    assert "produce(events)" in message and "ValueError: boom" in message and str(tmp_path) in message


def test_executed_problem_missing_failed_stale(tmp_path: Path) -> None:
    source, executed = tmp_path / "01_x.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook(nbformat.v4.new_code_cell("x = 1")), source)
    assert "No executed copy" in book.executed_problem(source, executed)

    nbformat.write(notebook(error_cell("x = 1")), executed)
    assert "stopped with ValueError: boom" in book.executed_problem(source, executed)

    nbformat.write(notebook(nbformat.v4.new_code_cell("x = 2")), executed)
    assert "older than the notebook" in book.executed_problem(source, executed)

    injected = nbformat.v4.new_code_cell("X = 3")
    injected.metadata["tags"] = ["injected-parameters"]
    nbformat.write(notebook(injected, nbformat.v4.new_code_cell("x = 1")), executed)
    assert book.executed_problem(source, executed) is None


def test_plotly_outputs_become_offline_html() -> None:
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [
        nbformat.v4.new_output("execute_result", data={book.PLOTLY_MIME: fig.to_plotly_json(), "text/plain": "Figure"})
    ]
    removed = nbformat.v4.new_code_cell("fig")
    removed.metadata["tags"] = ["remove-output"]
    removed.outputs = [nbformat.v4.new_output("display_data", data={book.PLOTLY_MIME: fig.to_plotly_json()})]
    nb = notebook(cell, removed)
    assert book.plotly_outputs(nb) == 1
    assert book.plotly_to_html(nb) == 2
    html = cell.outputs[0]["data"]["text/html"]
    assert book.PLOTLY_MIME not in cell.outputs[0]["data"]
    assert book.PLOTLY_DIV_CLASS in html and "Plotly.newPlot" in html
    assert "require(" not in html and "cdn" not in html.lower() and "<script src" not in html


def test_stage_refuses_missing_executed_copies(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook(nbformat.v4.new_code_cell("x = 1")), tmp_path / "notebooks" / "00_a.ipynb")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/00_a\n  - file: notebooks/01_gone\n"
    )
    with pytest.raises(UserError) as exc:
        book.stage(book.Layout(tmp_path))
    assert "No executed copy of 00_a.ipynb" in str(exc.value)
    assert "_toc.yml lists notebooks/01_gone.ipynb, which does not exist" in str(exc.value)


def test_parameters_from_the_command_line() -> None:
    params = parse_parameters(["N_SENSORS=100", "TOPIC=raw", "RATE=0.1"])
    assert params == {"N_SENSORS": 100, "TOPIC": "raw", "RATE": 0.1}
    with pytest.raises(UserError):
        parse_parameters(["n_sensors=3"])


def test_lab_avoids_the_s3_filer_port() -> None:
    assert book.LAB_PORT != 8888
    assert f"--port={book.LAB_PORT}" in lab_command()


# ------------------------------------------------------------------------------------------------------------------
# What a built page and an executed notebook must not show (sensorops_book.checks)


def page(body: str) -> str:
    return f"<html><head><script>const x = '```{{note}}';</script></head><body>{body}</body></html>"


RENDERED_EXERCISE = (
    '<article class="bd-article"><div class="exercise admonition" id="ex-00-status">'
    '<p class="admonition-title"><span class="caption-number">Exercise 2 </span> (What <code>make status</code> '
    "tells you)</p><p>Run <code>make status</code>; the labels: 3:1 and class 2 in a table.</p></div>"
    '<details class="solution dropdown"><summary>Solution to Exercise 2</summary><p>PIDs.</p></details></article>'
)


@pytest.mark.parametrize(
    "broken",
    [
        "<p>```{exercise} What <code>make status</code> tells you :label: ex-00-status</p>",
        "<pre>```{solution} ex-00-status\n:class: dropdown\n\nIt also lists the PIDs.</pre>",
        "<p>:::{note}</p><p>Context.</p><p>:::</p>",
        "<p>{exercise}`ex-00-slots`</p>",
        "<p>Intro</p><p>:label: ex01-drift</p>",
    ],
)
def test_raw_directives_are_found(broken: str) -> None:
    found = checks.raw_directives(page(f'<article class="bd-article"><h1>00 · T</h1>{broken}</article>'))
    assert found, f"not caught: {broken}"


def test_rendered_directives_pass() -> None:
    assert checks.raw_directives(page(RENDERED_EXERCISE)) == []  # the <script> holds "```{note}": not page text


def executed(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in cells:
        cell.execution_count = 1
    return notebook(*cells)


def with_outputs(*outputs: nbformat.NotebookNode, tags: list[str] | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs, cell.metadata["tags"] = list(outputs), tags or []
    return cell


def stream(text: str, name: str = "stderr") -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name=name, text=text)


NOISY = {
    "tqdm": stream("\rgrid search:  10%|▉         | 2/21 [00:00<00:04,  4.33fit/s, random_forest]"),
    "tqdm, finished": stream("100%|██████████| 21/21 [00:06<00:00, 3.20it/s]\n"),
    "widget": nbformat.v4.new_output(
        "display_data", data={checks.WIDGET_MIME: {"model_id": "a"}, "text/plain": "HBox(children=(...))"}
    ),
    "IProgress": stream("TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"),
    "UserWarning": stream("/work/lib/x.py:3: UserWarning: Hint: Inferred schema contains integer column(s)\n"),
    "mlflow INFO": stream("2026/12/01 05:29:41 INFO mlflow.store.model_registry.abstract_store: Waiting up to 300\n"),
    "logging": stream("INFO:sensorops.registry:champion moved to 12\n", name="stdout"),
    "registry print": stream("Registered model 'sensor-anomaly-detector' already exists. Creating a new version\n"),
    "copied": stream("Copied version '3' of model 'a' to version '1' of model 'b'.\n"),
}


@pytest.mark.parametrize("output", NOISY.values(), ids=NOISY.keys())
def test_output_noise_is_found(output: nbformat.NotebookNode) -> None:
    found = checks.output_noise(executed(nbformat.v4.new_code_cell("a"), with_outputs(output)))
    assert found and all(line.startswith("cell 1: ") for line in found), found


def test_lesson_outputs_and_removed_cells_pass() -> None:
    frame = nbformat.v4.new_output(
        "execute_result", data={"text/plain": "   level  count\n0  INFO?  3", "text/html": "<table/>"}
    )
    states = stream("05:34:32  check_services       running\n05:34:35  prepare   success\n", name="stdout")
    plain = nbformat.v4.new_output("execute_result", data={"text/plain": "{'readings': 6000, 'failed': 0}"})
    removed = with_outputs(NOISY["tqdm"], NOISY["mlflow INFO"], tags=["remove-output"])
    no_stderr = with_outputs(NOISY["tqdm"], states, tags=["remove-stderr"])
    assert checks.output_noise(executed(with_outputs(frame, states, plain), removed, no_stderr)) == []
    still_shown = with_outputs(NOISY["logging"], tags=["remove-stderr"])  # stdout: shown
    assert checks.output_noise(executed(still_shown)) != []


def test_exercises_count_per_chapter() -> None:
    # what Sphinx's numfig assigns without a numbered toctree: one count across the whole book
    fignumbers = {
        "book/intro": {"figure": {"f1": (1,)}},
        "notebooks/00_check": {"exercise": {"ex-a": (1,), "ex-b": (2,)}},
        "notebooks/03_train": {"exercise": {"ex-c": (3,), "ex-d": (4,), "ex-e": (5,)}, "figure": {"f2": (2,)}},
        "book/extra": {"exercise": {"ex-f": (6,)}},
    }
    changed = number_per_chapter(fignumbers)
    assert fignumbers["notebooks/00_check"]["exercise"] == {"ex-a": (1,), "ex-b": (2,)}
    assert fignumbers["notebooks/03_train"]["exercise"] == {"ex-c": (1,), "ex-d": (2,), "ex-e": (3,)}
    assert fignumbers["book/extra"]["exercise"] == {"ex-f": (1,)}
    assert fignumbers["notebooks/03_train"]["figure"] == {"f2": (2,)} and fignumbers["book/intro"] == {
        "figure": {"f1": (1,)}
    }
    assert changed == ["book/extra", "notebooks/03_train"]  # chapter 00 came first: already 1, 2
    assert number_per_chapter(fignumbers) == []  # numbered already: nothing to rewrite


def test_exercise_numbers_of_a_page() -> None:
    assert checks.exercise_numbers(page(RENDERED_EXERCISE)) == ["2"]
    two = RENDERED_EXERCISE.replace("Exercise 2 ", "Exercise 3.1 ") + RENDERED_EXERCISE.replace(
        "Exercise 2 ", "Exercise 3.2 "
    )
    assert checks.exercise_numbers(page(two)) == ["3.1", "3.2"]
    assert checks.exercise_numbers(page("<p>Exercise 8</p>")) == []


# ------------------------------------------------------------------------------------------------------------------
# The published book: no link to the reader's machine, no launch button, no pre-signed URL


@pytest.mark.parametrize(
    "url, local",
    [
        ("http://127.0.0.1:5000/#/experiments/1", True),
        ("http://localhost:8080", True),
        ("//127.0.0.1:8899/lab/tree/x.ipynb", True),
        ("http://0.0.0.0:9090/graph", True),
        ("http://[::1]:8081", True),
        ("https://kafka.apache.org/documentation/", False),
        ("http://localhost.example.org/", False),
        ("../book/setup.html#the-services", False),
    ],
)
def test_local_urls(url: str, local: bool) -> None:
    assert bool(LOCAL_URL.match(url)) is local


def test_links_to_the_readers_machine_become_their_address() -> None:
    body = (
        '<li><a class="reference external" href="http://127.0.0.1:5000/#/runs/abc">random_forest</a>: F1 0.9</li>'
        '<p>See <a href="http://127.0.0.1:8081">http://127.0.0.1:8081</a> and '
        '<a class="reference external" href="https://flink.apache.org/">Flink</a>.</p>'
    )
    out = unlink_local(body)
    assert 'href="http://127' not in out and checks.publication_problems(page(out)) == []
    assert (
        'random_forest (<code class="docutils literal notranslate"><span class="pre">http://127.0.0.1:5000/#/runs/abc'
        in out
    )
    assert '<span class="pre">http://127.0.0.1:8081</span></code> and' in out
    assert '<a class="reference external" href="https://flink.apache.org/">Flink</a>' in out
    assert checks.publication_problems(page(body)) != []


LAUNCH_DROPDOWN = (
    '<div class="article-header-buttons"><div class="dropdown dropdown-launch-buttons"><button class="btn" '
    'aria-label="Launch interactive content"></button><ul><li><a href="https://mybinder.org/v2/gh/x/y/HEAD" '
    'class="btn btn-launch-binder-button dropdown-item">Binder</a></li></ul></div></div>'
)
UNPUBLISHABLE = {
    "autolink": '<p><a class="reference external" href="http://127.0.0.1:8081">http://127.0.0.1:8081</a></p>',
    "localhost image": '<img src="http://localhost:8050/panel.png">',
    "launch dropdown": LAUNCH_DROPDOWN,
    "local JupyterLab": '<a href="http://127.0.0.1:8899/lab/tree/notebooks/00_check_platform.ipynb">JupyterLab</a>',
    "pre-signed": "<pre>http://127.0.0.1:8333/reports/r.html?X-Amz-Algorithm=AWS4-HMAC-SHA256&amp;"
    "X-Amz-Credential=AKIA0000%2F20261201&amp;X-Amz-Signature=abc123</pre>",
    "pre-signed, v2": "<p>https://s3.example.org/b/k?AWSAccessKeyId=AKIA0000&amp;Expires=1&amp;Signature=x</p>",
}


@pytest.mark.parametrize("html", UNPUBLISHABLE.values(), ids=UNPUBLISHABLE.keys())
def test_unpublishable_pages_are_caught(html: str) -> None:
    assert checks.publication_problems(page(f'<div class="header-article-items">{html}</div>')), html


def test_a_page_that_says_where_each_ui_lives_passes() -> None:
    body = (
        '<div class="header-article-items"><div class="article-header-buttons"><div class="dropdown '
        'dropdown-download-buttons"><a href="../_sources/notebooks/00.ipynb" class="btn-download-source-button">'
        ".ipynb</a></div></div></div>"
        '<article class="bd-article"><table><tr><td>Flink</td><td><code class="docutils literal notranslate">'
        '<span class="pre">http://127.0.0.1:8081</span></code></td></tr></table>'
        '<p><a class="reference external" href="https://airflow.apache.org/docs/">Airflow</a>, '
        '<a class="reference internal" href="../book/setup.html#the-services">the services</a>; '
        "the report is fetched by its <code>s3://pipeline-reports/r.html</code> URI.</p></article>"
    )
    assert checks.publication_problems(page(body)) == []


# ------------------------------------------------------------------------------------------------------------------
# `make lab` renders MyST: jupyterlab-myst installed, enabled and loadable (sensorops_book.lab)

GREEN, RED, RESET = "\x1b[32m", "\x1b[31m", "\x1b[0m"
LISTED_OK = (  # JupyterLab 4.5.11 with jupyterlab-myst 2.7.0, as `jupyter labextension list` prints it
    "JupyterLab v4.5.11\n/x/share/jupyter/labextensions\n"
    f"        jupyterlab-myst v2.7.0 {GREEN}enabled{RESET} {GREEN}OK{RESET} (python, jupyterlab_myst)\n"
    f"        jupyterlab_pygments v0.3.0 {GREEN}enabled{RESET} {GREEN}OK{RESET} (python, jupyterlab_pygments)\n"
)
LISTED_CONFLICT = (  # JupyterLab 4.6.6 with the same extension
    "JupyterLab v4.6.6\n/x/share/jupyter/labextensions\n"
    f"        jupyterlab-myst v2.7.0 {GREEN}enabled{RESET} {RED} X{RESET} (python, jupyterlab_myst)\n\n\n"
    '"jupyterlab-myst@2.7.0" is not compatible with the current JupyterLab\nConflicting Dependencies:\n'
    "JupyterLab    Extension         Package\n>=4.0.0-b1 <5.0.0>=3.0.0 <4.0.0    @jupyter/ydoc\n"
)


def test_lab_extension_listing_is_read() -> None:
    extensions = lab.parse_listing(LISTED_OK)
    assert extensions["jupyterlab-myst"] == lab.Extension("jupyterlab-myst", "2.7.0", enabled=True, ok=True)
    assert lab.problems(LISTED_OK) == []


@pytest.mark.parametrize(
    "listed, expected",
    [
        (LISTED_CONFLICT, "cannot load it: is not compatible with the current JupyterLab"),
        (
            LISTED_OK.replace("jupyterlab-myst v2.7.0 \x1b[32menabled", "jupyterlab-myst v2.7.0 \x1b[31mdisabled"),
            "disabled",
        ),
        ("JupyterLab v4.5.11\n/x/share/jupyter/labextensions\n", "not installed"),
    ],
    ids=["ydoc conflict", "disabled", "missing"],
)
def test_lab_extension_problems(listed: str, expected: str) -> None:
    (problem,) = lab.problems(listed)
    assert problem.startswith("jupyterlab-myst") and expected in problem, problem
    with pytest.raises(UserError, match="raw text"):
        lab.require_extensions(listed)
    lab.require_extensions(LISTED_OK)


def test_this_environment_renders_myst_in_jupyterlab() -> None:
    """The installed JupyterLab loads jupyterlab-myst (`make install` installs the pinned pair)."""
    listed = lab.listing()
    assert lab.problems(listed) == [], listed
