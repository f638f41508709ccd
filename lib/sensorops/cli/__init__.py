"""The `sensorops` command: one subcommand per pipeline stage.

Each stage lives in its own module here and exposes `register(subparsers)`; the handler it sets returns an exit
code. Errors that a user can fix (`UserError`) print one line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sensorops.errors import UserError

NOISY_LOGGERS = ("kafka", "py4j", "urllib3", "botocore", "mlflow")
STAGES = ("platform", "generate", "replay", "stream", "train", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sensorops", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        try:
            module = importlib.import_module(f"sensorops.cli.{stage}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sensorops.cli.{stage}":
                raise
            continue  # a stage not built yet
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not args.verbose:
        for name in NOISY_LOGGERS:  # client libraries log every connection at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"sensorops {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
