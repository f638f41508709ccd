"""The challenger's verdict from live metrics: the same windows for both, F1 of summed counts, a margin, enough data."""

from __future__ import annotations

import pandas as pd

from sensorops.scoring import shadow


def window(end: str, version: str, tp: int, fp: int, fn: int, tn: int = 900) -> dict:
    return {"window_end": end, "model_version": version, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_a_better_challenger_is_promoted_on_the_windows_both_scored() -> None:
    rows = pd.DataFrame(
        [
            window("2026-11-30T10:00:00Z", "3", 90, 10, 10),  # champion alone: not compared
            window("2026-11-30T10:01:00Z", "3", 80, 20, 20),
            window("2026-11-30T10:01:00Z", "4", 90, 5, 10),
            window("2026-11-30T10:02:00Z", "3", 70, 30, 30),
            window("2026-11-30T10:02:00Z", "4", 95, 5, 5),
        ]
    )
    v = shadow.judge(rows, "3", "4", period_s=600, margin=0.01, min_events=100)
    assert v.promote and v.events == 2010  # the fewer of the two versions' readings in the windows compared
    assert round(v.champion_f1, 4) == round(2 * 150 / (2 * 150 + 50 + 50), 4)
    assert round(v.challenger_f1, 4) == round(2 * 185 / (2 * 185 + 10 + 15), 4)


def test_no_promotion_without_a_margin_enough_data_or_a_challenger() -> None:
    same = pd.DataFrame([window("2026-11-30T10:01:00Z", v, 80, 20, 20) for v in ("3", "4")])
    assert not shadow.judge(same, "3", "4", min_events=100).promote  # equal: not better by the margin
    assert "too little live data" in shadow.judge(same, "3", "4", min_events=10_000).reason
    assert shadow.judge(same, "3", None).reason == "no challenger to judge"
    assert not shadow.judge(same, "3", "3").promote


def test_only_the_stated_period_counts() -> None:
    rows = pd.DataFrame(
        [
            window("2026-11-30T08:00:00Z", "3", 10, 90, 90),  # long ago the champion was poor...
            window("2026-11-30T08:00:00Z", "4", 90, 10, 10),
            window("2026-11-30T10:00:00Z", "3", 90, 5, 5),  # ...lately it is the better one
            window("2026-11-30T10:00:00Z", "4", 60, 40, 40),
        ]
    )
    assert not shadow.judge(rows, "3", "4", period_s=1800, min_events=100).promote
    assert shadow.judge(rows, "3", "4", period_s=4 * 3600, min_events=100).promote
