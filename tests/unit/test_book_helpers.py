"""tools/sensorops_book without a kernel or services: TOC parsing, failure detection, staleness, plotly conversion."""

from __future__ import annotations

from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest

import sensorops_book as book
from sensorops.errors import UserError
from sensorops_book.__main__ import lab_command, parse_parameters


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
