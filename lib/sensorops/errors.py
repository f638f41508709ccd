"""Errors a user can act on, and the exit codes every entry point uses.

The CLI prints a `UserError` as one line, the notebooks show it as is. Entry points (`sensorops`, the pipeline's
pod command, the book tool) end through `exit_code`, so a script sees the same codes from all of them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran and found something wrong (a service is down, a check failed)."""
EXIT_USER_ERROR = 2
"""Bad input or a missing prerequisite: the message says what to do (argparse uses 2 for usage errors too)."""
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what to do."""


class ServiceUnavailable(UserError):
    """A platform service does not answer."""


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """The exception's message on one line (client libraries put response bodies in theirs), at most `limit` chars."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exit_code(command: str, run: Callable[[], int | None]) -> int:
    """Run an entry point's body: its own code, or `EXIT_USER_ERROR` after printing a `UserError` as one line."""
    try:
        return int(run() or EXIT_OK)
    except UserError as exc:
        print(f"{command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
