"""The alert-episode rule (`scoring.alerts`) on hand-built sequences: when an episode opens, escalates and closes."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest

from sensorops.errors import UserError
from sensorops.scoring import alerts
from sensorops.scoring.alerts import EpisodeRule, EpisodeState, Reading

RULE = EpisodeRule(k=3, n=5, m=5)
T0 = 1_796_000_000_000
"""An event time (ms) to count from; reading i is at T0 + 1000 i."""


def run(
    flags: list[int],
    rule: EpisodeRule = RULE,
    scores: list[float] | None = None,
    sensor: str = "s1",
    offset_ms: int = 0,
) -> tuple[EpisodeState, list[alerts.AlertChange]]:
    """Feed readings one second apart through `step`; the final state and every change."""
    state, changes = None, []
    for i, flag in enumerate(flags):
        score = scores[i] if scores else (0.9 if flag else 0.1)
        reading = Reading(T0 + offset_ms + 1000 * i, bool(flag), score, "7")
        state, change = alerts.step(state, reading, rule, sensor)
        changes += [change] if change else []
    return state, changes


def test_opens_at_the_kth_flag_of_n_from_the_first_flag_in_the_window() -> None:
    _, changes = run([0, 1, 0, 1, 0, 1])
    assert len(changes) == 1
    opened = changes[0]
    assert (opened.status, opened.severity) == ("open", "warning")
    assert opened.opened_at_ms == T0 + 5000  # the third flag
    assert opened.first_reading_ms == T0 + 1000  # the first flag of the window that opened it
    assert opened.last_reading_ms == T0 + 5000
    assert (opened.readings, opened.flagged) == (5, 3)
    assert opened.episode_id == f"s1:{T0 + 1000}"
    assert opened.model_version == "7" and opened.closed_at_ms is None


def test_k_minus_one_flags_in_a_window_never_open() -> None:
    assert run([1, 0, 0, 1, 1])[1]  # three flags within five readings: opens
    _, changes = run([1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1])  # never more than two flags in any five readings
    assert changes == []
    state, _ = run([1, 1])
    assert state.episode is None and len(state.window) == 2


def test_k_equals_one_opens_on_any_flag() -> None:
    _, changes = run([0, 0, 1], rule=EpisodeRule(k=1, n=1, m=1))
    assert [c.status for c in changes] == ["open"]
    assert changes[0].first_reading_ms == changes[0].opened_at_ms == T0 + 2000


def test_closes_after_exactly_m_unflagged_readings() -> None:
    _, changes = run([1, 1, 1, 0, 0, 0, 0])
    assert [c.status for c in changes] == ["open"]  # m - 1 = 4 normals: still open
    _, changes = run([1, 1, 1, 0, 0, 0, 0, 0])
    assert [c.status for c in changes] == ["open", "closed"]
    closed = changes[-1]
    assert closed.closed_at_ms == T0 + 7000  # the fifth normal reading
    assert closed.last_reading_ms == T0 + 2000
    assert (closed.readings, closed.flagged) == (3, 3)  # trailing normals are not part of the episode


def test_a_flag_restarts_the_count_of_normal_readings() -> None:
    state, changes = run([1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    assert [c.status for c in changes] == ["open"] and state.quiet == 4
    _, changes = run([1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    closed = changes[-1]
    assert closed.status == "closed" and closed.closed_at_ms == T0 + 12000
    assert (closed.readings, closed.flagged, closed.last_reading_ms) == (8, 4, T0 + 7000)


def test_escalation_sends_one_update_and_no_message_per_reading() -> None:
    state, changes = run([1] * 12 + [0] * 5)
    statuses = [(c.status, c.severity) for c in changes]
    assert statuses == [("open", "warning"), ("update", "critical"), ("closed", "critical")]
    assert changes[1].flagged == 2 * RULE.k and changes[1].last_reading_ms == T0 + 5000
    assert changes[2].flagged == 12 and changes[2].readings == 12
    assert state == EpisodeState(last_ms=T0 + 16000)  # back to watching, with an empty window


def test_peak_score_is_the_highest_flagged_score() -> None:
    scores = [0.7, 0.95, 0.1, 0.8, 0.99, 0.6, 0.6, 0.6, 0.6, 0.6]
    _, changes = run([1, 1, 0, 1, 0, 0, 0, 0, 0, 0], scores=scores)  # 0.99 is not flagged
    assert [c.status for c in changes] == ["open", "closed"]
    assert changes[0].peak_score == changes[1].peak_score == 0.95


def test_a_closed_episode_does_not_count_towards_the_next() -> None:
    rule = EpisodeRule(k=3, n=5, m=1)
    _, changes = run([1, 1, 1, 0, 1, 1], rule=rule)
    assert [c.status for c in changes] == ["open", "closed"]  # 2 new flags only, though 4 of the last 5 are flags
    _, changes = run([1, 1, 1, 0, 1, 1, 1], rule=rule)
    assert [c.status for c in changes] == ["open", "closed", "open"]
    assert changes[2].first_reading_ms == T0 + 4000


def test_a_duplicate_reading_is_ignored() -> None:
    def feed(readings: list[tuple[int, bool]]) -> list[alerts.AlertChange]:
        state, out = None, []
        for ms, flag in readings:
            state, change = alerts.step(state, Reading(T0 + ms, flag, 1.0, "7"), RULE, "s1")
            out += [change] if change else []
        return out

    assert feed([(0, True), (0, True), (1000, True)]) == []  # two distinct flags, not three
    assert [c.first_reading_ms for c in feed([(0, True), (0, True), (1000, True), (2000, True)])] == [T0]
    # During an open episode a repeated normal reading does not bring the close closer.
    opened = [(0, True), (1000, True), (2000, True)]
    normals = [(ms, False) for ms in (3000, 4000, 4000, 5000, 5000, 6000)]
    assert [c.status for c in feed(opened + normals)] == ["open"]
    assert [c.status for c in feed(opened + normals + [(7000, False)])] == ["open", "closed"]


def test_state_round_trips_through_pickle_and_a_bare_tuple() -> None:
    state, _ = run([1, 1, 1, 1, 0, 0])
    assert state.episode is not None
    assert pickle.loads(pickle.dumps(state)) == state
    bare = pickle.loads(pickle.dumps(tuple(state)))
    assert type(bare) is tuple and EpisodeState(*bare) == state
    # The restored state carries on exactly as the original.
    rest = [Reading(T0 + 1000 * i, False, 0.1, "7") for i in range(6, 9)]
    outcomes = []
    for start in (state, pickle.loads(pickle.dumps(state))):
        s, out = start, []
        for r in rest:
            s, change = alerts.step(s, r, RULE, "s1")
            out.append(change)
        outcomes.append(out)
    assert outcomes[0] == outcomes[1] and outcomes[0][-1].status == "closed"


def test_rule_is_validated() -> None:
    with pytest.raises(UserError, match=r"1 <= k <= n .* k=6, n=5"):
        EpisodeRule(k=6, n=5)
    with pytest.raises(UserError, match="k=0"):
        EpisodeRule(k=0)
    with pytest.raises(UserError, match="m >= 1"):
        EpisodeRule(m=0)
    with pytest.raises(UserError, match="integers"):
        EpisodeRule(k=2.5)


def scores_frame(sensor: str, flags: list[int], offset_ms: int = 0) -> pd.DataFrame:
    times = [T0 + offset_ms + 1000 * i for i in range(len(flags))]
    return pd.DataFrame(
        {
            "sensor_id": sensor,
            "event_time": pd.to_datetime(times, unit="ms", utc=True),
            "score": [0.9 if f else 0.1 for f in flags],
            "decision": [bool(f) for f in flags],
            "model_version": "7",
        }
    )


def test_batch_over_interleaved_sensors_equals_step_per_sensor() -> None:
    a = [0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1]
    b = [1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    frame = pd.concat([scores_frame("a", a), scores_frame("b", b, offset_ms=500)])
    shuffled = frame.sample(frac=1, random_state=3)  # rows interleaved and out of order
    changes = alerts.episodes(shuffled, RULE)
    expected = run(a, sensor="a")[1] + run(b, sensor="b", offset_ms=500)[1]
    statuses = [f"{c.sensor_id} {c.status}" for c in expected]
    assert statuses == ["a open", "a closed", "a open", "a update", "b open", "b update", "b closed"]
    got = [alerts.AlertChange(*(None if v is pd.NA else v for v in row)) for row in changes.itertuples(index=False)]
    assert got == expected
    table = alerts.episode_table(changes)
    assert list(table["open"]) == [False, True, False]
    assert list(table["status"]) == ["closed", "update", "closed"]  # the last change of each episode


def test_batch_drops_duplicate_rows_like_the_stream() -> None:
    frame = scores_frame("a", [1, 1])
    doubled = pd.concat([frame, frame])  # the two flags arrive twice: still two readings, not four
    assert alerts.episodes(doubled, RULE).empty
    third = pd.concat([doubled, scores_frame("a", [1], offset_ms=2000)])
    assert alerts.episodes(third, RULE)["status"].tolist() == ["open"]


def test_batch_of_nothing_has_the_columns() -> None:
    empty = alerts.episodes(scores_frame("a", []), RULE)
    assert list(empty.columns) == alerts.COLUMNS and empty.empty
    assert alerts.episode_table(empty).empty
