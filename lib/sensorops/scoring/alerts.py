"""Alert episodes: when a sensor's flagged readings become one alert, and when that alert ends.

A model flags single readings; an operator wants one alert per incident. An *episode* of a sensor opens when at least
`k` of its last `n` readings are flagged and closes after `m` consecutive unflagged ones. The scoring job (its worker
keeps one `EpisodeState` per sensor, `scoring.job.ScoreFunction`) and `episodes` (pandas) both run `step`, so stream
and batch cannot disagree on what an alert is.

- An episode starts at `first_reading_ms`, the earliest flagged reading in the window of `n` that opened it, and opens
  at `opened_at_ms` (the `k`-th flag); `last_reading_ms` is its last flagged reading. `readings` counts the readings
  from first to last, `flagged` the flagged ones, `peak_score` is the highest score of those. `model_version` is the
  model that scored the opening reading; `closed_at_ms` the `m`-th unflagged reading, which closed the episode.
- Severity: ``"warning"`` at open, ``"critical"`` from `2 k` flagged readings on (sustained: twice what it took to
  open). A count, not a score: scores have no common scale (a probability, a detector's score). It only rises, so an
  episode sends at most ``"open"``, one ``"update"`` (the escalation) and ``"closed"``: one message per change of state.
- A closed episode's readings never count towards the next one: the window starts empty after a close.

`step` takes a sensor's readings as they arrive (as the rolling features do, `sensorops.features`), late ones
included. A reading with the same event time as the sensor's previous one is a duplicate from an at-least-once topic
and is ignored (an older duplicate arriving later counts again). `episodes` sorts each sensor's readings by event time,
stably, which makes every duplicate adjacent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from sensorops.errors import UserError

OPEN, UPDATE, CLOSED = "open", "update", "closed"
WARNING, CRITICAL = "warning", "critical"


@dataclass(frozen=True)
class EpisodeRule:
    """Open when at least `k` of the last `n` readings are flagged; close after `m` consecutive unflagged ones."""

    k: int = 3
    n: int = 5
    m: int = 5

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.k, self.n, self.m)):
            raise UserError(f"k, n and m must be integers, got k={self.k!r}, n={self.n!r}, m={self.m!r}")
        if not 1 <= self.k <= self.n:
            raise UserError(f"an episode needs 1 <= k <= n flagged readings, got k={self.k}, n={self.n}")
        if self.m < 1:
            raise UserError(f"an episode closes after m >= 1 unflagged readings, got m={self.m}")


class Reading(NamedTuple):
    """One scored reading of a sensor: event time (epoch ms), flagged by the model, its score, the model's version."""

    event_ms: int
    flagged: bool
    score: float
    model_version: str


Window = tuple[tuple[int, float] | None, ...]
"""A sensor's last `n` readings while no episode is open: (event_ms, score) if flagged, else None."""


class AlertChange(NamedTuple):
    """A change of an episode's state: the message the scoring job writes to the alerts topic."""

    sensor_id: str
    episode_id: str
    status: str
    severity: str
    first_reading_ms: int
    last_reading_ms: int
    readings: int
    flagged: int
    peak_score: float
    model_version: str
    opened_at_ms: int
    closed_at_ms: int | None


class EpisodeState(NamedTuple):
    """What `step` remembers of one sensor: plain values, so it pickles into Flink state (`tuple(s)` and
    `EpisodeState(*t)` convert it to and from a bare tuple)."""

    last_ms: int | None = None
    """Event time of the previous reading, to drop a duplicate."""
    window: Window = ()
    episode: AlertChange | None = None
    """The open episode, up to date with the last flagged reading (its `status` is that of its last change)."""
    quiet: int = 0
    """Consecutive unflagged readings since the open episode's last flagged one."""


COLUMNS = list(AlertChange._fields)
_INTS = ("first_reading_ms", "last_reading_ms", "readings", "flagged", "opened_at_ms")
_DTYPES = {**dict.fromkeys(_INTS, "int64"), "peak_score": "float64", "closed_at_ms": "Int64"}


def severity(flagged: int, rule: EpisodeRule) -> str:
    """``"critical"`` from `2 k` flagged readings on, ``"warning"`` below."""
    return CRITICAL if flagged >= 2 * rule.k else WARNING


def _open(window: Window, reading: Reading, rule: EpisodeRule, sensor_id: str) -> AlertChange:
    flags = [w for w in window if w is not None]
    first = next(i for i, w in enumerate(window) if w is not None)
    return AlertChange(
        sensor_id=sensor_id,
        episode_id=f"{sensor_id}:{flags[0][0]}",
        status=OPEN,
        severity=severity(len(flags), rule),
        first_reading_ms=flags[0][0],
        last_reading_ms=reading.event_ms,
        readings=len(window) - first,
        flagged=len(flags),
        peak_score=max(score for _, score in flags),
        model_version=reading.model_version,
        opened_at_ms=reading.event_ms,
        closed_at_ms=None,
    )


def step(
    state: EpisodeState | None, reading: Reading, rule: EpisodeRule, sensor_id: str
) -> tuple[EpisodeState, AlertChange | None]:
    """The sensor's next state after `reading` (`state` None: its first reading), and the change it causes, if any."""
    s = state or EpisodeState()
    if reading.event_ms == s.last_ms:
        return s, None
    s, ep = s._replace(last_ms=reading.event_ms), s.episode
    if ep is None:
        window = (*s.window, (reading.event_ms, reading.score) if reading.flagged else None)[-rule.n :]
        if sum(w is not None for w in window) < rule.k:
            return s._replace(window=window), None
        ep = _open(window, reading, rule, sensor_id)
        return EpisodeState(last_ms=reading.event_ms, episode=ep), ep
    if not reading.flagged:
        if s.quiet + 1 < rule.m:
            return s._replace(quiet=s.quiet + 1), None
        return EpisodeState(last_ms=reading.event_ms), ep._replace(status=CLOSED, closed_at_ms=reading.event_ms)
    ep = ep._replace(
        last_reading_ms=reading.event_ms,
        readings=ep.readings + s.quiet + 1,
        flagged=ep.flagged + 1,
        peak_score=max(ep.peak_score, reading.score),
    )
    level = severity(ep.flagged, rule)
    if level != ep.severity:
        ep = ep._replace(status=UPDATE, severity=level)
        return s._replace(episode=ep, quiet=0), ep
    return s._replace(episode=ep, quiet=0), None


def event_ms(times: pd.Series) -> np.ndarray:
    """Event times (timestamps, naive ones taken as UTC, or epoch milliseconds already) as epoch milliseconds."""
    if pd.api.types.is_numeric_dtype(times):
        return times.to_numpy(dtype="int64")
    return pd.to_datetime(times, utc=True).astype("datetime64[ms, UTC]").astype("int64").to_numpy()


def episodes(scores: pd.DataFrame, rule: EpisodeRule | None = None) -> pd.DataFrame:
    """Every alert change of a scores frame (sensor_id, event_time, decision, score, model_version), one row each,
    with `COLUMNS`: `step` over each sensor's readings sorted by event time."""
    rule = rule or EpisodeRule()
    named = scores.assign(sensor_id=scores["sensor_id"].astype(str))
    ordered = named.sort_values(["sensor_id", "event_time"], kind="stable")
    rows = zip(
        ordered["sensor_id"].tolist(),
        event_ms(ordered["event_time"]).tolist(),
        ordered["decision"].astype(bool).tolist(),
        ordered["score"].astype(float).tolist(),
        ordered["model_version"].astype(str).tolist(),
    )
    changes: list[AlertChange] = []
    state, current = None, None
    for sensor, *fields in rows:
        if sensor != current:
            state, current = None, sensor
        state, change = step(state, Reading(*fields), rule, sensor)
        if change is not None:
            changes.append(change)
    return pd.DataFrame(changes, columns=COLUMNS).astype(_DTYPES)


def episode_table(changes: pd.DataFrame) -> pd.DataFrame:
    """One row per episode (its last change, so an open episode's counts are as of that change), with `open`
    True for an episode not closed yet; sorted by sensor and first reading."""
    last = changes.groupby("episode_id", sort=False).tail(1)
    table = last.assign(open=last["status"] != CLOSED)
    return table.sort_values(["sensor_id", "first_reading_ms"], kind="stable").reset_index(drop=True)
