"""The `sensorops` command: one subcommand per pipeline stage.

Each stage lives in its own module here and exposes `register(subparsers)`; the handler it sets returns an exit
code. Every error is one line on stderr: a `UserError` says what to do (exit 2); anything unexpected is reported as
an internal error (exit 1), with its traceback only under `-v`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import requests

from sensorops.errors import EXIT_FAILED, ServiceUnavailable, UserError, exit_code, one_line

NOISY_LOGGERS = ("kafka", "py4j", "urllib3", "botocore", "mlflow")
STAGES = ("platform", "profile", "generate", "replay", "stream", "train", "score", "monitor", "drift", "bench")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The command line; only the stage that `argv` names is imported, if it names one.

    A stage's module imports what its commands need (pandas, MLflow, scikit-learn ...): importing every stage to run
    one made the platform's long-running `sensorops monitor dashboard` 304 MiB resident instead of 22.
    """
    parser = argparse.ArgumentParser(prog="sensorops", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    named = next((a for a in argv if not a.startswith("-")), None)
    for stage in (named,) if named in STAGES else STAGES:
        try:
            module = importlib.import_module(f"sensorops.cli.{stage}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sensorops.cli.{stage}":
                raise
            continue  # a stage not built yet
        module.register(sub)
    return parser


def _quiet_clients() -> None:
    """Client libraries log every connection at INFO; kafka-python logs each failed bootstrap attempt at WARNING
    and ERROR, which the one-line error already says."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _run(args: argparse.Namespace, command: str) -> int:
    """The handler, with what escapes it turned into one line: a `UserError` for exit_code, or an internal error."""
    try:
        return int(args.handler(args) or 0)
    except (UserError, KeyboardInterrupt):
        raise
    except requests.RequestException as exc:  # an HTTP service answered, but not as its API does (5xx, HTML, ...)
        raise ServiceUnavailable(
            f"a service answered with an error ({type(exc).__name__}: {exc}); "
            "check the services with `sensorops platform status` (restart them with `make up`)"
        ) from exc
    except MemoryError as exc:
        print(f"{command}: error: out of memory ({exc or 'MemoryError'}); ask for less at once", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing left to tell it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit does not fail too
        return EXIT_FAILED
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(
            f"{command}: internal error: {type(exc).__name__}: {one_line(exc)} "
            "(run with -v for the traceback; please report it)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:
        _quiet_clients()
    command = f"sensorops {args.command}"
    return exit_code(command, lambda: _run(args, command))


if __name__ == "__main__":
    sys.exit(main())
