"""The JupyterLab extensions `make lab` needs: MyST rendering, so that a notebook reads as its page in the book.

Without jupyterlab-myst, JupyterLab shows every `{exercise}`, `{solution}` and `{note}` as raw text, the solution in
plain sight. With it, exercises are boxes and solutions fold, as in the book. The pair is pinned in pyproject.toml and
requirements.lock: jupyterlab-myst 2.7.0 shares `@jupyter/ydoc` 3 with JupyterLab, and JupyterLab 4.6 moved to
`@jupyter/ydoc` 4, so there `jupyter labextension list` marks it `X` (installed, enabled, and never loaded); with
JupyterLab 4.5.11 it is `enabled OK` (checked in a fresh virtualenv, and the exercises of chapter 00 seen rendered
in headless Chromium).

`python -m sensorops_book lab` checks this before it starts JupyterLab, and `tests/unit/test_book_helpers.py` checks
the installed environment, so a JupyterLab upgrade that disables the extension fails a test instead of a workshop.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sensorops.errors import UserError

REQUIRED = {"jupyterlab-myst": "renders exercises, solutions and admonitions as the book does"}
"""Extension name -> why `make lab` needs it."""

LINE = re.compile(r"^\s+(?P<name>\S+) v(?P<version>\S+) (?P<enabled>enabled|disabled)\s+(?P<status>OK|X)\b")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Extension:
    """One line of `jupyter labextension list`."""

    name: str
    version: str
    enabled: bool
    ok: bool


def parse_listing(text: str) -> dict[str, Extension]:
    """The extensions in the output of `jupyter labextension list` (colours removed), by name."""
    found = {}
    for line in ANSI.sub("", text).splitlines():
        if match := LINE.match(line):
            found[match["name"]] = Extension(
                match["name"], match["version"], match["enabled"] == "enabled", match["status"] == "OK"
            )
    return found


def problems(text: str, required: dict[str, str] = REQUIRED) -> list[str]:
    """What keeps each required extension from working, one line each; empty when all are enabled and OK."""
    extensions = parse_listing(text)
    found = []
    for name, why in required.items():
        ext = extensions.get(name)
        if ext is None:
            found.append(f"{name} is not installed (it {why}): run `make install`.")
        elif not ext.enabled:
            found.append(f"{name} {ext.version} is disabled: `jupyter labextension enable {name}`.")
        elif not ext.ok:
            reason = " ".join(ANSI.sub("", text).split(f'"{name}@{ext.version}"', 1)[-1].split())[:300]
            found.append(f"{name} {ext.version} is enabled but JupyterLab cannot load it: {reason}")
    return found


def listing(jupyter: Path | None = None) -> str:
    """The output of `jupyter labextension list` in this environment (it writes to stderr)."""
    command = [str(jupyter or Path(sys.executable).parent / "jupyter"), "labextension", "list"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return result.stdout + result.stderr


def require_extensions(listed: str | None = None) -> None:
    """Raise `UserError` naming the fix unless every required extension is installed, enabled and loadable, in
    `listed` (the output of `jupyter labextension list`) or, by default, in this environment."""
    if found := problems(listing() if listed is None else listed):
        raise UserError("JupyterLab would show MyST as raw text:\n" + "\n".join(f"- {p}" for p in found))
