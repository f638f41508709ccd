"""`wait_until`: the one bounded polling loop of the library, the tests and the notebooks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from sensorops.errors import UserError

T = TypeVar("T")


class TimedOut(UserError):
    """A condition did not hold in time; `last` is the last value the probe returned."""

    def __init__(self, message: str, last: object) -> None:
        super().__init__(message)
        self.last = last


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool] = bool,
    *,
    timeout: float,
    interval: float = 0.5,
    message: str | Callable[[T], str] = "the condition did not hold",
) -> T:
    """Call `probe` every `interval` seconds until `done(value)` holds; return that value.

    After `timeout` seconds raise `TimedOut` with `message` (a text, or a function of the last value that says what
    was seen and what to do). The probe runs at least once, so a zero timeout still checks.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            text = message(value) if callable(message) else message
            raise TimedOut(f"{text} (waited {timeout:g} s)", value)
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
