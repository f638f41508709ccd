"""The cluster image carries the runtime package alone: no extra, no book or test tooling, no editable checkout.

No container engine runs in CI, so the Containerfile is read, not built: its `pip install` must name the project
without an extra (`.`, not `.[all]`), not editable, with the lock as constraints, and it must copy only the
library's sources. The book and test packages must stay out of the runtime `dependencies` it installs.
"""

from __future__ import annotations

import re
import shlex
import tomllib

from sensorops.config import ROOT

CONTAINERFILE = ROOT / "deploy" / "k8s" / "Containerfile"
BOOK_AND_TEST = {
    "jupyter-book",
    "sphinx-exercise",
    "papermill",
    "nbformat",
    "jupyterlab",
    "ipykernel",
    "pytest",
    "ruff",
}
NOT_IN_THE_IMAGE = {"tools", "tests", "notebooks", "book", "_build", ".venv", ".platform", ".env"}


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in CONTAINERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def pip_installs() -> list[list[str]]:
    """The arguments of every `pip install` the image runs."""
    commands = []
    for keyword, args in instructions():
        if keyword == "RUN":
            for command in re.split(r"&&|;", args):
                words = shlex.split(command)
                if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                    commands.append(words[words.index("install") + 1 :])
    return commands


def requirement_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]).lower()


def test_the_image_installs_the_runtime_package_only() -> None:
    installs = pip_installs()
    assert len(installs) == 1, f"one `pip install` of the project, found {installs}"
    args = installs[0]
    assert "-e" not in args and "--editable" not in args, "the image installs the package, not an editable checkout"
    assert args[args.index("-c") + 1] == "requirements.lock", "the lock is the constraints file"
    targets = [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] not in ("-c", "--constraint")]
    assert targets == ["."], f"install `.` with no extra (book, test, platform, airflow stay out): {targets}"


def test_the_image_copies_only_what_runs_there() -> None:
    copied = [shlex.split(args)[:-1] for keyword, args in instructions() if keyword in ("COPY", "ADD")]
    sources = {source.rstrip("/") for sources in copied for source in sources if not source.startswith("--")}
    assert "." not in sources, "copy the files the package needs, not the whole repository"
    assert not sources & NOT_IN_THE_IMAGE, f"the image must not carry {sorted(sources & NOT_IN_THE_IMAGE)}"
    assert {"lib", "pyproject.toml", "requirements.lock"} <= sources, f"the package is built from these: {sources}"


def test_book_and_test_packages_are_not_runtime_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert not runtime & BOOK_AND_TEST, f"move to the `book` or `test` extra: {sorted(runtime & BOOK_AND_TEST)}"
    extras = project["optional-dependencies"]
    in_extras = {requirement_name(r) for name in ("book", "test") for r in extras[name]}
    assert BOOK_AND_TEST <= in_extras, f"declare in the `book` or `test` extra: {sorted(BOOK_AND_TEST - in_extras)}"
