"""Execute the notebooks with papermill, build the Jupyter Book, or start JupyterLab on the notebooks.

`PYTHONPATH=tools python -m sensorops_book notebooks|build|lab`; `make notebooks`, `make book` and `make lab` run
it. It ends through `sensorops.errors.exit_code`, so it exits as the `sensorops` CLI does: 0 when it worked, 2 with
a one-line message for a `UserError` (a failed notebook, a book that cannot be built), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sensorops.errors import UserError, exit_code
from sensorops_book.execution import execute_all, platform_environment
from sensorops_book.lab import require_extensions
from sensorops_book.layout import LAB_PORT, REPO, ROOT
from sensorops_book.staging import build

log = logging.getLogger("sensorops_book")

PROG = "python -m sensorops_book"


def lab_command(port: int = LAB_PORT) -> list[str]:
    """The JupyterLab command `make lab` runs: local only, rooted at the repository, opening `notebooks/`."""
    command = [
        str(Path(sys.executable).parent / "jupyter"),
        "lab",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",  # book/setup.md names this port
        "--no-browser",
        f"--ServerApp.root_dir={ROOT}",
        "--ServerApp.default_url=/lab/tree/notebooks",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI machines often run as root
    return command


def parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """`--param NAME=VALUE` pairs as papermill parameters; a VALUE that parses as JSON is taken as JSON."""
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


def parser() -> argparse.ArgumentParser:
    """The command line: `notebooks [--smoke] [--param NAME=VALUE ...]`, `build`, `lab [--port N]`."""
    root = argparse.ArgumentParser(prog=PROG, description=(__doc__ or "").splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)
    nbs = sub.add_parser("notebooks", help="execute every notebook in order into _build/notebooks/")
    nbs.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    nbs.add_argument("--smoke", action="store_true", help="the smoke size the tests run (fewer models, shorter runs)")
    sub.add_parser("build", help="build the HTML book from the executed notebooks")
    lab = sub.add_parser("lab", help="JupyterLab on the notebooks, with the platform's settings")
    lab.add_argument("--port", type=int, default=LAB_PORT)
    return root


def run(args: argparse.Namespace) -> None:
    """Carry out one parsed command; a `UserError` says what went wrong and what to do."""
    if args.command == "notebooks":
        runs = execute_all(parameters=parse_parameters(args.param), smoke=args.smoke)
        if not runs:
            raise UserError(f"No notebooks found in {REPO.notebooks_dir}")
        log.info("executed %d notebooks into %s", len(runs), REPO.executed_dir)
    elif args.command == "build":
        started = time.monotonic()
        index = build()
        log.info("book built in %.0f s: %s", time.monotonic() - started, index)
    elif args.command == "lab":
        require_extensions()  # MyST rendered, or a one-line reason and the fix
        command = lab_command(args.port)
        os.execve(command[0], command, {**os.environ, **platform_environment()})


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sensorops_book notebooks|build|lab`; returns the exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # papermill imports gcsfs, whose google dependencies warn about Python 3.11's end of life on every run
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    return exit_code(f"sensorops_book {args.command}", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
