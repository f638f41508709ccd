"""Shadow scoring's verdict: the `challenger` takes the `champion` alias only when its live metrics beat the
champion's over the same windows of the stated period.

The scoring job writes, per model version, confusion counts over sliding windows of event time to the metrics
topic. `judge` sums them over the windows that both versions scored in the last `period_s` (the same readings for
both) and compares F1 computed from the sums, not an average of per-window F1s, which a quiet window would sway.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sensorops import config, kafka_io, registry

DEFAULT_PERIOD_S = 1800.0
DEFAULT_MARGIN = 0.01
MIN_EVENTS = 500


@dataclass(frozen=True)
class Verdict:
    champion: str | None
    challenger: str | None
    champion_f1: float | None
    challenger_f1: float | None
    events: int
    """Readings each version scored in the windows compared (counted once per window)."""
    promote: bool
    reason: str


def _f1(counts: pd.Series) -> float:
    denominator = 2 * counts["tp"] + counts["fp"] + counts["fn"]
    return float(2 * counts["tp"] / denominator) if denominator else 0.0


def judge(
    metrics: pd.DataFrame,
    champion: str | None,
    challenger: str | None,
    *,
    period_s: float = DEFAULT_PERIOD_S,
    margin: float = DEFAULT_MARGIN,
    min_events: int = MIN_EVENTS,
) -> Verdict:
    """Whether `challenger` should become champion, from the metrics topic's rows (one per window and version)."""
    if challenger is None or champion is None or challenger == champion:
        return Verdict(champion, challenger, None, None, 0, False, "no challenger to judge")
    rows = metrics[metrics["model_version"].isin([champion, challenger])].copy()
    rows["window_end"] = pd.to_datetime(rows["window_end"], utc=True, format="ISO8601")
    recent = rows[rows["window_end"] > rows["window_end"].max() - pd.Timedelta(seconds=period_s)] if len(rows) else rows
    both = recent.groupby("window_end")["model_version"].transform("nunique") == 2
    totals = recent[both].groupby("model_version")[["tp", "fp", "fn", "tn"]].sum()
    events = int(totals.sum(axis=1).min()) if len(totals) == 2 else 0
    if events < min_events:
        return Verdict(
            champion, challenger, None, None, events, False, f"too little live data ({events} < {min_events})"
        )
    f1 = {version: _f1(totals.loc[version]) for version in (champion, challenger)}
    promote = f1[challenger] > f1[champion] + margin
    reason = (
        f"live F1 over the last {period_s / 60:g} min: challenger {f1[challenger]:.3f}, champion {f1[champion]:.3f} "
        f"({'beats it by more' if promote else 'not better by more'} than {margin:g})"
    )
    return Verdict(champion, challenger, f1[champion], f1[challenger], events, promote, reason)


def judge_and_promote(
    model_name: str = registry.MODEL_NAME,
    metrics_topic: str = config.MODEL_METRICS_TOPIC,
    *,
    period_s: float = DEFAULT_PERIOD_S,
    margin: float = DEFAULT_MARGIN,
) -> Verdict:
    """Judge the registry's `challenger` on the live metrics; if it wins, it becomes `champion` (the scoring job
    follows within a poll) and the `challenger` alias is removed."""
    champion = registry.alias_version(model_name, registry.CHAMPION)
    challenger = registry.alias_version(model_name, registry.CHALLENGER)
    try:
        metrics = pd.DataFrame(kafka_io.read(metrics_topic, last=20_000, committed_only=True, timeout_s=20))
    except kafka_io.MissingTopic:
        metrics = pd.DataFrame()
    if metrics.empty:
        metrics = pd.DataFrame(columns=["window_end", "model_version", "tp", "fp", "fn", "tn"])
    verdict = judge(metrics, champion, challenger, period_s=period_s, margin=margin)
    if verdict.promote:
        client = registry.client()
        client.set_registered_model_alias(model_name, registry.CHAMPION, str(challenger))
        client.delete_registered_model_alias(model_name, registry.CHALLENGER)
    return verdict
