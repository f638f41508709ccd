"""Hands-on exercises: the learner fills in a code cell, a check cell tests it against the services, and the tests
run the notebook once with the solution filled in, after showing that the check fails on the stub.

In a notebook an exercise is four pieces, in this order:

1. a markdown cell with the `{exercise}` directive and its `:label:`, saying what to write;
2. a code cell tagged `exercise`: the stub the learner completes (it runs, and assigns the names the check reads);
3. the next code cell, tagged `check`: plain `assert`s with messages that say what is wrong and how to fix it;
4. a markdown cell with `{solution} LABEL` (`:class: dropdown`, folded in the book and in JupyterLab), holding the
   answer as one fenced ```` ```python ```` block, then why it is right.

The solution lives once, in the markdown the reader opens: the tests run exactly what the reader is shown.
`with_solutions` prepares the copy papermill executes: after each stub it inserts the check again, tagged
`raises-exception` (nbclient runs past it), then the solution. So one run executes the stub, the check on the stub
(which must fail), the solution and the check (which must pass). `settle` then verifies that each check failed on
its stub with an `AssertionError` that says something, and removes the inserted cells: the executed copy has the
notebook's own cells, with the stub in the exercise cell (its outputs cleared) and the check's passing output below
it, which is what the book shows.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

EXERCISE_TAG = "exercise"
CHECK_TAG = "check"
STUB_CHECK_TAG = "check-on-stub"
SOLUTION_TAG = "solution-run"
RAISES_TAG = "raises-exception"
INSERTED = {STUB_CHECK_TAG, SOLUTION_TAG}

EXERCISE_LABEL = re.compile(r"[`:]{3,}\{exercise(?:-start)?\}[^\n]*\n(?:[ \t]*:[^\n]*\n)*?[ \t]*:label:[ \t]*(\S+)")
PYTHON_BLOCK = re.compile(r"^(`{3,})python[ \t]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Exercise:
    """One hands-on exercise of a notebook: where its cells are and what its solution runs."""

    label: str
    exercise_index: int
    check_index: int | None
    stub: str
    solution: str | None


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def solution_code(nb: Any, label: str) -> str | None:
    """The first ```` ```python ```` block after `{solution} LABEL` in a markdown cell, or None."""
    opening = re.compile(r"[`:]{3,}\{solution(?:-start)?\}[ \t]+" + re.escape(label) + r"[ \t]*$", re.MULTILINE)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (found := opening.search(cell.source)):
            block = PYTHON_BLOCK.search(cell.source, found.end())
            return block.group(2).rstrip("\n") if block else None
    return None


def exercises(nb: Any) -> list[Exercise]:
    """The notebook's hands-on exercises: each code cell tagged `exercise`, with the label of the `{exercise}`
    directive above it, the check cell after it and the code of its solution."""
    found = []
    label = ""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            labels = EXERCISE_LABEL.findall(cell.source)
            label = labels[-1] if labels else label
        elif EXERCISE_TAG in _tags(cell):
            following = next((i for i in range(index + 1, len(nb.cells)) if nb.cells[i].cell_type == "code"), None)
            check = following if following is not None and CHECK_TAG in _tags(nb.cells[following]) else None
            found.append(Exercise(label, index, check, cell.source, solution_code(nb, label) if label else None))
    return found


def problems(nb: Any) -> list[str]:
    """What keeps the notebook's exercises from being run and checked by the tests, one line each."""
    found = []
    labels = [e.label for e in exercises(nb)]
    for ex in exercises(nb):
        name = f"the exercise cell {ex.exercise_index} ({ex.label or 'no label'})"
        if not ex.label:
            found.append(f"{name}: no `{{exercise}}` directive with a `:label:` above it")
        elif labels.count(ex.label) > 1:
            found.append(f"{name}: {labels.count(ex.label)} exercise cells share the label {ex.label}")
        if ex.check_index is None:
            found.append(f"{name}: the next code cell must be its check, tagged `{CHECK_TAG}`")
        elif not re.search(r"(?m)^\s*assert\b.*,", nb.cells[ex.check_index].source):
            found.append(f"{name}: its check has no `assert ..., message` (say what is wrong when it fails)")
        if ex.label and ex.solution is None:
            found.append(f"{name}: no `{{solution}} {ex.label}` with a ```python block in a markdown cell")
        elif ex.solution is not None:
            try:  # a cell magic's body (%%writefile FILE) is Python too
                body = ex.solution.split("\n", 1)[1] if ex.solution.startswith("%%") else ex.solution
                compile(body, f"<solution {ex.label}>", "exec")
            except SyntaxError as exc:
                found.append(f"{name}: its solution is not valid Python: {exc}")
            if ex.solution.strip() == ex.stub.strip():
                found.append(f"{name}: the solution is the stub")
    checks = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and CHECK_TAG in _tags(c)]
    orphans = sorted(set(checks) - {e.check_index for e in exercises(nb)})
    if orphans:
        found.append(f"check cells {orphans} follow no exercise cell")
    return found


def _inserted(cell: Any, source: str, tags: list[str], label: str) -> Any:
    import nbformat

    new = nbformat.v4.new_code_cell(source)
    new.metadata = copy.deepcopy(cell.metadata)
    new.metadata["tags"] = tags
    new.metadata["sensorops"] = {"exercise": label}
    return new


def with_solutions(nb: Any) -> Any:
    """A copy of `nb` that runs each stub, its check (expected to fail), the solution, then the check again.

    Raises `ValueError` listing `problems(nb)` if an exercise is incomplete."""
    if found := problems(nb):
        raise ValueError("; ".join(found))
    out = copy.deepcopy(nb)
    for ex in reversed(exercises(nb)):
        assert ex.check_index is not None and ex.solution is not None  # problems() said so
        check = nb.cells[ex.check_index]
        stub_tags = [t for t in _tags(check) if t != CHECK_TAG] + [RAISES_TAG, STUB_CHECK_TAG]
        out.cells[ex.exercise_index + 1 : ex.exercise_index + 1] = [
            _inserted(check, check.source, stub_tags, ex.label),
            _inserted(nb.cells[ex.exercise_index], ex.solution, [SOLUTION_TAG], ex.label),
        ]
    return out


def settle(nb: Any) -> list[str]:
    """After the run: whether each check failed on its stub as it should (the problems, one line each); removes the
    inserted cells from `nb` in place, so that it holds the notebook's own cells again."""
    found = []
    for cell in nb.cells:
        if STUB_CHECK_TAG not in _tags(cell):
            continue
        label = cell.metadata.get("sensorops", {}).get("exercise", "?")
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if not errors:
            found.append(f"exercise {label}: its check passed on the stub, so it cannot tell a learner what is wrong")
        elif errors[0].get("ename") != "AssertionError" or not str(errors[0].get("evalue", "")).strip():
            error = f"{errors[0].get('ename')}: {str(errors[0].get('evalue', ''))[:200]}"
            found.append(
                f"exercise {label}: on the stub its check must fail with an AssertionError that says what is "
                f"wrong, not {error}"
            )
    nb.cells = [c for c in nb.cells if not INSERTED & set(_tags(c))]
    for cell in nb.cells:
        if EXERCISE_TAG in _tags(cell):
            cell.outputs = []  # what the stub printed ("Writing /home/you/..."): nothing a reader of the book needs
    return found


def stub_messages(nb: Any) -> dict[str, str]:
    """What each check said about its stub, by exercise label (read before `settle` removes those cells)."""
    said = {}
    for cell in nb.cells:
        if STUB_CHECK_TAG in _tags(cell):
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            label = cell.metadata.get("sensorops", {}).get("exercise", "?")
            said[label] = errors[0].get("evalue", "") if errors else ""
    return said
