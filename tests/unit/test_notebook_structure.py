"""Structure of the chapter notebooks and of the book, without running anything.

Every notebook in `notebooks/` follows the skeleton in STYLE.md: a `# NN · Title`, learning objectives and a time,
exactly one `parameters` cell, a preflight, exercises with dropdown solutions (the hands-on ones with a stub, a check
cell and a solution that the notebook tests run), a "Check your work" section with asserts, and no committed
outputs. `_toc.yml` lists every notebook, in filename order.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

import sensorops_book as book
from sensorops_book import exercises
from sensorops_book.layout import TOOLS_DIR

NOTEBOOKS = book.notebook_sources()
IDS = [p.stem for p in NOTEBOOKS]
TITLE = re.compile(r"^# (\d\d) · \S.*$")
UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def markdown(nb: nbformat.NotebookNode) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, f"no chapter notebooks (NN_name.ipynb) in {book.REPO.notebooks_dir}"


def test_notebook_names_are_ordered_and_unique() -> None:
    prefixes = [p.name[:2] for p in NOTEBOOKS]
    assert len(set(prefixes)) == len(prefixes), f"two notebooks share a number: {[p.name for p in NOTEBOOKS]}"
    strays = [p.name for p in book.REPO.notebooks_dir.glob("*.ipynb") if p not in NOTEBOOKS]
    assert not strays, f"notebooks not named NN_lower_snake.ipynb, so outside the book and the tests: {strays}"


def test_toc_lists_every_notebook_in_filename_order() -> None:
    listed = book.toc_notebooks()
    expected = [f"notebooks/{p.stem}" for p in NOTEBOOKS]
    missing = [e for e in expected if e not in listed]
    extra = [e for e in listed if e not in expected]
    assert not missing, f"notebooks missing from _toc.yml: {missing}"
    assert not extra, f"_toc.yml lists notebooks that do not exist: {extra}"
    assert listed == expected, f"_toc.yml must list the notebooks in filename order:\n{listed}\n!=\n{expected}"


def test_toc_entries_exist_once() -> None:
    entries = book.toc_entries()
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    assert not duplicates, f"listed twice in _toc.yml: {duplicates}"
    missing = [e for e in entries if not any((book.ROOT / f"{e}{s}").exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_book_pages_are_all_in_the_toc() -> None:
    entries = set(book.toc_entries())
    orphans = [p.name for p in sorted(book.REPO.pages_dir.glob("*.md")) if f"book/{p.stem}" not in entries]
    assert not orphans, f"pages in book/ that _toc.yml does not list (only_build_toc_files drops them): {orphans}"


def test_book_config() -> None:
    cfg = yaml.safe_load(book.REPO.config_file.read_text())
    assert cfg["execute"]["execute_notebooks"] == "off", "papermill executes; the book must not run notebooks again"
    assert cfg["only_build_toc_files"] is True
    assert "sphinx_exercise" in cfg["sphinx"]["extra_extensions"]
    extensions = cfg["sphinx"]["local_extensions"]  # the JupyterLab button and plotly.js come from it
    assert list(extensions) == ["sensorops_book.sphinx_extension"]
    path = (book.REPO.staging_dir / extensions["sensorops_book.sphinx_extension"]).resolve()
    assert path == TOOLS_DIR, f"jupyter-book reads the staged _config.yml in {book.REPO.staging_dir}: fix the path"
    launch = cfg.get("launch_buttons", {})
    assert not any(launch.get(k) for k in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url", "thebe")), (
        "no launch button: the notebooks need the platform on the reader's machine"
    )
    assert "repository" not in cfg or cfg["repository"].get("url"), "name the repository, or leave `repository:` out"
    buttons = [k for k, v in cfg.get("html", {}).items() if k.endswith("_button") and k != "use_download_button" and v]
    assert not buttons, f"no repository, issue or edit buttons: the book names no public repository ({buttons})"


# ------------------------------------------------------------------------------------------------------------------
# One notebook at a time


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_is_valid_notebook(path: Path) -> None:
    nbformat.validate(read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_title(path: Path) -> None:
    first = read(path).cells[0]
    line = first.source.strip().splitlines()[0] if first.source.strip() else ""
    match = TITLE.match(line)
    assert first.cell_type == "markdown" and match, (
        f"the first cell must start with `# {path.name[:2]} · Title`, got {line!r}"
    )
    assert match.group(1) == path.name[:2], f"title number {match.group(1)} does not match the file name {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_one_parameters_cell_with_upper_snake_names(path: Path) -> None:
    cells = [c for c in read(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name} has {len(cells)} cells tagged `parameters`; it needs exactly one"
    cell = cells[0]
    assert cell.cell_type == "code", "the `parameters` cell must be a code cell"
    names = []
    for node in ast.parse(cell.source).body:
        assert isinstance(node, (ast.Assign, ast.AnnAssign)), (
            f"only assignments in the parameters cell, got: {ast.unparse(node)}"
        )
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    assert names, "the parameters cell assigns nothing"
    lower = [n for n in names if not UPPER_SNAKE.match(n)]
    assert not lower, f"parameters must be UPPER_SNAKE: {lower}"


def test_smoke_parameters_name_a_notebook_and_its_parameters() -> None:
    by_stem = {p.stem: p for p in NOTEBOOKS}
    for stem, parameters in book.SMOKE.items():
        assert stem in by_stem, f"SMOKE names {stem}, which is not a notebook"
        (cell,) = [c for c in read(by_stem[stem]).cells if "parameters" in c.metadata.get("tags", [])]
        declared = {t.id for node in ast.parse(cell.source).body for t in node.targets if isinstance(t, ast.Name)}
        assert set(parameters) <= declared, f"{stem}: SMOKE sets {set(parameters) - declared}, not parameters"


def test_smoke_live_scoring_run_closes_a_metrics_window() -> None:
    """Chapter 05 waits for a window of live metrics: its smoke run must outlast a slide plus the watermark delay
    (a 60 s run left one CI run waiting for a window that could never close)."""
    from sensorops.scoring import ScoringJobConfig

    job = ScoringJobConfig()
    smoke = book.SMOKE["05_score_stream_alerts"]["DURATION_S"]
    assert smoke > job.metrics_slide_s + job.watermark_delay_s + 1, f"a {smoke} s run may close no window"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_committed_outputs(path: Path) -> None:
    dirty = [i for i, c in enumerate(read(path).cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_objectives_and_time(path: Path) -> None:
    text = markdown(read(path))
    assert re.search(r"(?i)learning objectives", text), f"{path.name}: no learning objectives"
    assert re.search(r"(?i)\btime\b.{0,40}?\b\d+\s*(min|minutes)\b", text), (
        f"{path.name}: no time estimate such as `Time: about 30 minutes`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_preflight_requires_services(path: Path) -> None:
    code = "\n".join(c.source for c in code_cells(read(path)))
    assert "require(" in code, f"{path.name}: no preflight cell calling `platform.require(...)`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercises_with_dropdown_solutions(path: Path) -> None:
    text = markdown(read(path))
    exercises = re.findall(r"```\{exercise(?:-start)?\}", text) + re.findall(r":::\{exercise(?:-start)?\}", text)
    solutions = re.findall(r"[`:]{3}\{solution(?:-start)?\}[^\n]*\n((?::[^\n]*\n)*)", text)
    assert exercises, f"{path.name}: no sphinx-exercise `{{exercise}}` directive"
    assert len(solutions) >= len(exercises), f"{path.name}: {len(exercises)} exercises but {len(solutions)} solutions"
    closed = [opts for opts in solutions if not re.search(r":class:\s*dropdown", opts)]
    assert not closed, f"{path.name}: every solution needs `:class: dropdown` so it starts folded"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_check_your_work_asserts(path: Path) -> None:
    cells = read(path).cells
    heading = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "markdown" and re.search(r"(?mi)^##\s+.*check your work", c.source)
    ]
    assert heading, f"{path.name}: no `## Check your work` section"
    after = cells[heading[0] + 1 :]
    asserts = [c for c in after if c.cell_type == "code" and re.search(r"(?m)^\s*assert\b", c.source)]
    assert asserts, f"{path.name}: the Check your work section has no `assert`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_code_hygiene(path: Path) -> None:
    problems = []
    for i, cell in enumerate(code_cells(read(path))):
        src = cell.source
        if re.search(r"(?m)^\s*[!%]+\s*pip\b", src):
            problems.append(f"code cell {i}: installs packages (`!pip`); dependencies belong in pyproject.toml")
        if re.search(r"sys\.path\.(append|insert)", src):
            problems.append(f"code cell {i}: edits sys.path; the package is installed")
        if re.search(r"(?m)^\s*from\s+\S+\s+import\s+\*", src):
            problems.append(f"code cell {i}: star import")
        if re.search(r"renderers\.default\s*=|renderer\s*=", src):
            problems.append(f"code cell {i}: sets a plotly renderer; the default is the one the book renders offline")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


FENCE_WITH_BACKTICK = re.compile(r"(?m)^ {0,3}`{3,}[^`\n]*`.*$")
"""A backtick fence whose info string holds a backtick is no fence in CommonMark: the directive shows as text (and
its solution with it). Titles with code go in a colon fence, `:::{exercise} What \\`make status\\` tells you`."""


@pytest.mark.parametrize("path", [*NOTEBOOKS, *sorted(book.REPO.pages_dir.glob("*.md"))], ids=lambda p: p.name)
def test_no_backticks_in_a_backtick_fence_title(path: Path) -> None:
    text = markdown(read(path)) if path.suffix == ".ipynb" else path.read_text()
    broken = [line for line in FENCE_WITH_BACKTICK.findall(text) if not re.fullmatch(r" {0,3}`{3,}", line)]
    assert not broken, f"{path.name}: a fence cannot have backticks in its title, use `:::` instead: {broken}"


OFFICIAL_DOCS = re.compile(
    r"https://(kafka\.apache\.org|nightlies\.apache\.org/flink|mlflow\.org|airflow\.apache\.org|prometheus\.io|"
    r"scikit-learn\.org|kafka-python\.readthedocs\.io|json-schema\.org|github\.com/seaweedfs)/"
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_references_at_the_end(path: Path) -> None:
    cells = [c for c in read(path).cells if c.cell_type == "markdown"]
    last = cells[-1].source if cells else ""
    assert re.match(r"## References", last), f"{path.name}: the last cell must be `## References and further reading`"
    links = re.findall(r"\]\((\S+?)\)", last)
    official = [url for url in links if OFFICIAL_DOCS.match(url)]
    assert len(official) >= 3, f"{path.name}: link at least three pages of the tools' official documentation: {links}"
    assert official == links, f"{path.name}: references are the official documentation: {set(links) - set(official)}"


# ------------------------------------------------------------------------------------------------------------------
# Hands-on exercises: a stub the learner fills in, a check against the services, a solution the tests run

HANDS_ON_PER_CHAPTER = 2
"""Exercises in which the learner writes the code, in every chapter at least (issue 18)."""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_hands_on_exercises_have_a_check_and_a_solution(path: Path) -> None:
    nb = read(path)
    assert not exercises.problems(nb), f"{path.name}:\n" + "\n".join(exercises.problems(nb))
    found = [ex.label for ex in exercises.exercises(nb)]
    assert len(found) >= HANDS_ON_PER_CHAPTER, (
        f"{path.name}: {len(found)} code cells tagged `exercise` for the learner to fill in ({found}), "
        f"fewer than {HANDS_ON_PER_CHAPTER}"
    )
    for ex in exercises.exercises(nb):
        check = nb.cells[ex.check_index]
        assert "remove-cell" not in check.metadata.get("tags", []), f"{path.name}: the check of {ex.label} is hidden"


def exercise_notebook(check: str = "assert answer == 42, f'answer is {answer}, not 42'") -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_markdown_cell(":::{exercise} The answer\n:label: ex-answer\n\nSet `answer` to 42.\n:::"),
        nbformat.v4.new_code_cell("answer = None  # your code", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell(check, metadata={"tags": ["check"]}),
        nbformat.v4.new_markdown_cell(":::{solution} ex-answer\n:class: dropdown\n\n```python\nanswer = 42\n```\n:::"),
    ]
    return nbformat.v4.new_notebook(cells=cells)


def run_cells(nb: nbformat.NotebookNode) -> None:
    """Execute code cells the way nbclient does for these tests: an error output per failing cell, tagged or not."""
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            exec(cell.source, namespace)
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        except Exception as exc:
            cell.outputs = [nbformat.v4.new_output("error", ename=type(exc).__name__, evalue=str(exc), traceback=[])]
            if "raises-exception" not in cell.metadata.get("tags", []):
                raise


def test_the_run_checks_the_stub_then_the_solution() -> None:
    nb = exercise_notebook()
    assert exercises.exercises(nb)[0].solution == "answer = 42"
    prepared = exercises.with_solutions(nb)
    tags = [c.metadata.get("tags", []) for c in prepared.cells if c.cell_type == "code"]
    assert tags == [["exercise"], ["raises-exception", "check-on-stub"], ["solution-run"], ["check"]]
    run_cells(prepared)
    assert exercises.stub_messages(prepared) == {"ex-answer": "answer is None, not 42"}
    assert exercises.settle(prepared) == []
    assert [c.source for c in prepared.cells] == [c.source for c in nb.cells], "the executed copy shows the stub"
    assert prepared.cells[1].outputs == [] and prepared.cells[2].outputs, "the check's output stays, the stub's goes"


@pytest.mark.parametrize(
    ("check", "complaint"),
    [
        ("assert True, 'never fails'", "passed on the stub"),
        ("assert answer == 42, ''", "an AssertionError that says what is wrong"),
        ("assert answer + 1 == 43, 'not 42'", "not TypeError"),
    ],
)
def test_a_check_that_cannot_fail_on_the_stub_fails_the_run(check: str, complaint: str) -> None:
    prepared = exercises.with_solutions(exercise_notebook(check))
    run_cells(prepared)
    found = exercises.settle(prepared)
    assert len(found) == 1 and complaint in found[0], found


def test_an_exercise_without_check_or_solution_is_reported() -> None:
    nb = exercise_notebook()
    nb.cells[2].metadata["tags"] = []
    nb.cells[3].source = nb.cells[3].source.replace("```python", "```text")
    found = exercises.problems(nb)
    assert any("tagged `check`" in p for p in found) and any("```python block" in p for p in found), found
    with pytest.raises(ValueError, match="tagged `check`"):
        exercises.with_solutions(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_the_run_of_a_chapter_comes_back_to_its_own_cells(path: Path) -> None:
    nb = read(path)
    prepared = exercises.with_solutions(nb)
    for ex in exercises.exercises(nb):
        at = next(i for i, c in enumerate(prepared.cells) if c.source == ex.stub and "exercise" in c.metadata["tags"])
        stub_check, solution, check = prepared.cells[at + 1 : at + 4]
        assert stub_check.source == check.source == nb.cells[ex.check_index].source
        assert "raises-exception" in stub_check.metadata["tags"] and solution.source == ex.solution
    unrun = exercises.settle(prepared)  # nothing ran: no check failed on its stub
    assert len(unrun) == len(exercises.exercises(nb)) and all("passed on the stub" in p for p in unrun)
    assert [c.source for c in prepared.cells] == [c.source for c in nb.cells]
