"""Benchmark of scoring (`sensorops bench score`): the stream job and the scoring job side by side, on scratch topics
and a scratch copy of the registry's champion.

- Throughput: a backlog of events is produced; the stream job drains it, then the scoring job drains the features,
  with the stream job beside it. Each rate is an exact count over the span of record times: feature rows over their
  `features_at` (when the stream job wrote them), scores over `scored_at`.
- Live: a simulated fleet reports in real time at `rate` readings per second; a third of the way in, the alias moves
  to a second version. From the scores: latency percentiles from event time to score (and to the feature row), the
  alerts' latency from the reading that opened them, the time from the alias move to the first score by the new
  version, the balance (every reading scored once) and detection per anomaly type.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sensorops import flink, generator, kafka_io, registry, scoring, stream
from sensorops.errors import UserError
from sensorops.scoring import alerts, detection
from sensorops.waiting import wait_until


@dataclass
class Setup:
    """Scratch jobs and a scratch registered model holding two copies of the champion."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.model = f"bench-scoring-{self.tag}"
        self.stream = stream.StreamJobConfig.scratch("bench", self.tag, archive=False, aggregates=False)
        self.scoring = scoring.ScoringJobConfig.scratch(
            self.tag, features_topic=self.stream.features_topic, model_name=self.model, challenger_alias=""
        )

    def start(self) -> str:
        """Copy the champion twice (versions 1 and 2), point `champion` at 1, submit the stream job; the kind of
        model the champion is."""
        client = registry.client()
        champion = registry.current_champion()
        if champion is None:
            raise UserError("no champion in the registry: train one first (`make run`, or chapter 03)")
        for _ in range(2):
            registry.copy_version(f"models:/{registry.MODEL_NAME}/{champion}", self.model)
        client.set_registered_model_alias(self.model, registry.CHAMPION, "1")
        flink.wait_running(stream.submit(self.stream, fresh=True)[0], timeout=180)
        run = client.get_run(client.get_model_version(registry.MODEL_NAME, champion).run_id)
        return run.data.params.get("model", "?")

    def remove(self) -> None:
        stream.remove(self.stream)
        scoring.remove(self.scoring)
        with suppress(Exception):
            registry.client().delete_registered_model(self.model)

    def scores(self, since: pd.Timestamp | None = None) -> pd.DataFrame:
        rows = pd.DataFrame(kafka_io.read(self.scoring.scores_topic, max_records=10**7, timeout_s=60))
        for column in ("event_time", "features_at", "scored_at"):
            rows[column] = pd.to_datetime(rows[column], utc=True, format="ISO8601")
        return rows if since is None else rows[rows["event_time"] >= since]

    def wait_scored(self, total: int, timeout: float) -> None:
        wait_until(
            lambda: sum(kafka_io.end_offsets(self.scoring.scores_topic).values()),
            lambda n: n >= total,
            timeout=timeout,
            interval=2,
            message=lambda n: f"{n:,} of {total:,} events scored",
        )


def _rate(times: pd.Series) -> float:
    span = (times.max() - times.min()).total_seconds()
    return len(times) / span if span > 0 else float("nan")


def throughput(setup: Setup, n_events: int = 300_000, n_sensors: int = 100) -> dict[str, float]:
    """Each job drains a backlog of `n_events`: the stream job the events, then the scoring job (submitted once the
    features are all there, the stream job running beside it) the feature rows. Events per second of each, from
    exact counts and record times."""
    readings = generator.simulate(n_sensors=n_sensors, duration_s=n_events * 0.5 / n_sensors, seed=7)
    kafka_io.produce(readings, topic=setup.stream.source_topic, workers=2)
    wait_until(
        lambda: sum(kafka_io.end_offsets(setup.stream.features_topic).values()),
        lambda n: n >= len(readings),
        timeout=1800,
        interval=2,
    )
    flink.wait_running(scoring.submit(setup.scoring, fresh=True)[0], timeout=180)
    setup.wait_scored(len(readings), timeout=1800)
    scored = setup.scores()
    return {
        "events": float(len(readings)),
        "scored": float(len(scored)),
        "stream_events_per_s": _rate(scored["features_at"]),
        "scoring_events_per_s": _rate(scored["scored_at"]),
    }


def _percentiles(seconds: pd.Series) -> dict[str, float]:
    p = np.percentile(seconds.dropna() * 1000, [50, 95, 99]) if seconds.notna().any() else [np.nan] * 3
    return dict(zip(("p50_ms", "p95_ms", "p99_ms"), map(float, p), strict=True))


def live(setup: Setup, rate: float = 1000.0, duration_s: float = 60.0, interval_s: float = 0.5) -> dict[str, Any]:
    """A fleet reporting in real time at `rate` readings/s; the alias moves a third of the way in."""
    began = pd.Timestamp.now(tz="UTC").floor("s")  # before the simulator's start: every reading is after it
    sim = generator.SensorSimulator(
        generator.GeneratorConfig(n_sensors=max(1, round(rate * interval_s)), interval_s=interval_s, seed=21)
    )
    sent: list[pd.DataFrame] = []
    reports: list[Any] = []

    def frames():
        for frame in sim.live(duration_s):
            sent.append(frame)
            yield frame

    already = sum(kafka_io.end_offsets(setup.scoring.scores_topic).values())
    sender = threading.Thread(target=lambda: reports.append(kafka_io.produce(frames(), setup.stream.source_topic)))
    sender.start()
    time.sleep(duration_s / 3)
    registry.client().set_registered_model_alias(setup.model, registry.CHAMPION, "2")
    moved_at = pd.Timestamp.now(tz="UTC")
    sender.join()
    readings = pd.concat(sent, ignore_index=True)
    setup.wait_scored(already + len(readings), timeout=300)
    scored = setup.scores(since=began).assign(is_anomaly=lambda s: s["is_anomaly"].astype(bool))
    changes = pd.DataFrame(kafka_io.read(setup.scoring.alerts_topic, max_records=10**6, timeout_s=30))
    changes = changes[changes["first_reading_ms"] >= began.value // 10**6]
    opened = changes[changes["status"] == alerts.OPEN]
    first_new = scored.loc[scored["model_version"] == "2", "scored_at"].min()
    summary = detection.detection_summary(detection.event_detection(scored))
    return {
        "offered_per_s": len(readings) / duration_s,
        "sent": len(readings),
        "acknowledged": reports[0].acknowledged if reports else 0,
        "scored": len(scored),
        "scored_twice": int(scored.duplicated(["sensor_id", "event_time"]).sum()),
        "to_score": _percentiles((scored["scored_at"] - scored["event_time"]).dt.total_seconds()),
        "to_feature": _percentiles((scored["features_at"] - scored["event_time"]).dt.total_seconds()),
        "feature_to_score": _percentiles((scored["scored_at"] - scored["features_at"]).dt.total_seconds()),
        "to_alert": _percentiles((opened["emitted_ms"] - opened["opened_at_ms"]) / 1000),
        "alias_move_to_new_version_s": (first_new - moved_at).total_seconds(),
        "pointwise": detection.pointwise(scored),
        "detection": summary.reset_index().to_dict("records"),
        "alert_episodes": int(changes["episode_id"].nunique()),
        "false_alarm_episodes_per_sensor_hour": detection.false_alarm_episodes(alerts.episode_table(changes), scored),
    }
