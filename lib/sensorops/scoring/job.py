"""The scoring job: every feature row scored by the champion (and a challenger beside it), alert episodes per
sensor, and live model quality against the generator's labels.

Its own Flink job on the session cluster, reading the features topic that the stream job writes: the two can be
restarted, scaled and upgraded apart (a new model never restarts the feature job), and a backlog of features is
scored at the scorer's own pace. The job is Flink SQL around one piece of Python, `ScoreFunction`, a vectorised
(pandas) UDF: a bundle of rows is scored with one `predict_proba` call (a single-row call costs about 2 ms, a row in
a bundle of thousands a few microseconds) by the model each Python worker loads once and then follows through the
registry alias (`scoring.LiveModel`); the champion's decisions then go through the alert rule (`scoring.alerts`),
which reports a change only when an episode opens, changes severity or closes.

Outputs:
- `sensor-scores`: one row per event and scoring model (role `champion` or `challenger`), at least once with
  sub-second latency (a restarted job may repeat rows; (sensor_id, event_time, model_version) identifies one);
- `sensor-alerts`: episode changes, at least once (an episode change is identified by its id, status, severity);
- `sensor-model-metrics`: precision, recall, F1 and false-alarm rate per model version over sliding event-time
  windows, from the labels the events carry; exactly once (visible at checkpoints).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sensorops import config, kafka_io, registry
from sensorops.errors import UserError
from sensorops.scoring import alerts
from sensorops.scoring.models import LiveModel, decide, registry_load
from sensorops.stream.job import feature_schema
from sensorops.stream.tables import (
    JSON_VALUES,
    JobSettings,
    job_configuration,
    kafka_sink,
    kafka_source,
    table_environment,
    with_options,
)
from sensorops.training.data import MODEL_INPUTS

DEFAULT_JOB_NAME = "sensorops-scoring"
ROLES = ("champion", "challenger")
MODEL_FIELDS = ("version", "score", "decision", "threshold")
MODEL_COUNTERS = ("version", "registry_failures", "swaps")
"""Metrics of each role's model, as Flink counters of the scoring operator (`sensorops score status` reads them)."""
SCORE_FIELDS = {
    "sensor_id": "STRING",
    "event_time": "TIMESTAMP_LTZ(3)",
    "role": "STRING",
    "model_name": "STRING",
    "model_version": "STRING",
    "score": "DOUBLE",
    "decision": "BOOLEAN",
    "threshold": "DOUBLE",
    "is_anomaly": "BOOLEAN",
    "anomaly_type": "STRING",
    "features_at": "TIMESTAMP_LTZ(3)",
    "scored_at": "TIMESTAMP_LTZ(3)",
}
"""A row of `sensor-scores`. `features_at` is when the stream job wrote the feature row, `scored_at` when it was
scored: with `event_time` they say where the latency goes."""


@dataclass
class ScoringJobConfig(JobSettings):
    """Everything that parameterises one deployment of the scoring job (its Flink state: the metrics windows)."""

    name: str = DEFAULT_JOB_NAME
    features_topic: str = config.FEATURES_TOPIC
    scores_topic: str = config.SCORES_TOPIC
    alerts_topic: str = config.ALERTS_TOPIC
    metrics_topic: str = config.MODEL_METRICS_TOPIC
    model_name: str = registry.MODEL_NAME
    champion_alias: str = registry.CHAMPION
    challenger_alias: str = registry.CHALLENGER
    """Scored beside the champion (shadow scoring) whenever the alias exists; "" scores the champion alone."""
    poll_s: float = 30.0
    """How often each worker asks the registry where the aliases point."""
    alert_rule: alerts.EpisodeRule = field(default_factory=alerts.EpisodeRule)
    metrics_window_s: int = 300
    metrics_slide_s: int = 60
    bundle_size: int = 5000
    bundle_time_ms: int = 100
    """A bundle of rows goes to the model when it holds `bundle_size` rows or is `bundle_time_ms` old. Each call of
    a forest costs about 25 ms whatever its size: larger bundles drain a backlog faster, a shorter time scores sooner
    at a low rate."""

    def __post_init__(self) -> None:
        if isinstance(self.alert_rule, dict | list | tuple):
            self.alert_rule = alerts.EpisodeRule(**dict(self.alert_rule))  # from JSON
        if min(self.poll_s, self.metrics_slide_s, self.bundle_size, self.bundle_time_ms) <= 0:
            raise UserError("the poll interval, the metrics slide and the bundles must be positive")
        if self.metrics_window_s % self.metrics_slide_s:
            raise UserError(f"the metrics window ({self.metrics_window_s} s) must be a multiple of its slide")
        super().__post_init__()

    @classmethod
    def scratch(cls, tag: str, **overrides: Any) -> ScoringJobConfig:
        """A job with topics of its own (`test-<tag>-features`, ...), for tests and benchmarks."""
        topics = {f"{t}_topic": f"test-{tag}-{t}" for t in ("features", "scores", "alerts", "metrics")}
        return cls(name=f"test-scoring-{tag}", **{**topics, **overrides})

    @property
    def topics(self) -> tuple[str, str, str, str]:
        return self.features_topic, self.scores_topic, self.alerts_topic, self.metrics_topic


# -- the Python pieces -----------------------------------------------------------------------------------------


ALERT_TYPES = {
    "sensor_id": "STRING",
    "episode_id": "STRING",
    "status": "STRING",
    "severity": "STRING",
    "first_reading_ms": "BIGINT",
    "last_reading_ms": "BIGINT",
    "readings": "BIGINT",
    "flagged": "BIGINT",
    "peak_score": "DOUBLE",
    "model_version": "STRING",
    "opened_at_ms": "BIGINT",
    "closed_at_ms": "BIGINT",
    "emitted_ms": "BIGINT",
}
"""A row of `sensor-alerts`: one change of an episode (see `scoring.alerts`), and when the job emitted it."""


ALERT_FIELDS = [f for f in ALERT_TYPES if f != "sensor_id"]
"""What the UDF returns of an alert change, beside each row (`alert_<field>`, NULL on rows that change nothing)."""


RESULT_TYPES = {
    **{f"{r}_{f}": {"version": "STRING", "decision": "BOOLEAN"}.get(f, "DOUBLE") for r in ROLES for f in MODEL_FIELDS},
    **{f"alert_{f}": ALERT_TYPES[f] for f in ALERT_FIELDS},
    "scored_ms": "BIGINT",
}
"""The UDF's result row, in order."""


def _udf_type() -> str:
    return f"ROW<{', '.join(f'`{name}` {kind}' for name, kind in RESULT_TYPES.items())}>"


class ScoreFunction:
    """The pandas UDF: model inputs (one Series per column of `MODEL_INPUTS`) -> one result row per input row, with
    the champion's and the challenger's version, score, decision and threshold (NULL when that alias does not exist).

    Each bundle is scored by one version of each model (`LiveModel.current`, which a background thread keeps up
    with the alias): across an alias move no row is skipped or scored twice. Until a champion exists, rows pass
    with NULL results (`sensorops score status` says it waits for one).

    The champion's decisions then go through the alert rule (`alerts.step`), row by row in the order they arrive,
    with each sensor's episode state in this worker's memory: a row that opens, escalates or closes an episode
    carries the change (`alert_*`). Kafka partitions by sensor and the UDF is chained to the source, so a sensor's
    rows always reach the same worker. The state is not checkpointed: after a restart, open episodes are forgotten
    (they get no `closed` message) and rows replayed from the checkpoint may repeat a change. Measured, keeping it in
    Flink keyed state (a Python process function, 1.6 ms a row) capped the job at about 600 rows/s.
    """

    def __init__(self, cfg: ScoringJobConfig) -> None:
        self.cfg, self.rule = cfg, cfg.alert_rule
        self.models: dict[str, LiveModel] = {}
        self.counters: dict[tuple[str, str], Any] = {}
        self.reported: dict[tuple[str, str], int] = {}
        self.episodes: dict[str, alerts.EpisodeState] = {}

    def open(self, function_context: Any) -> None:
        aliases = {"champion": self.cfg.champion_alias, "challenger": self.cfg.challenger_alias}
        self.models = {
            role: LiveModel(self.cfg.model_name, alias, registry.alias_version, registry_load, self.cfg.poll_s)
            for role, alias in aliases.items()
            if alias
        }
        # A registry that does not answer fails a poll within seconds (MLflow's defaults retry for minutes).
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        metrics = function_context.get_metric_group()
        self.counters = {(role, n): metrics.counter(f"{role}_{n}") for role in self.models for n in MODEL_COUNTERS}
        for live in self.models.values():
            live.refresh()  # the first bundle is scored by the current version, if there is one
            live.follow()

    def close(self) -> None:
        for live in self.models.values():
            live.stop()

    def _report(self) -> None:
        """Bring the counters level with the models (a counter, not a gauge: PyFlink reports a Python gauge's first
        value only). The version counter holds the version number, 0 while there is none."""
        for (role, name), counter in self.counters.items():
            live = self.models[role]
            value = {"version": int(live.version or 0), "registry_failures": live.failures, "swaps": live.swaps}[name]
            if delta := value - self.reported.get((role, name), 0):  # PyFlink's count restarts with each bundle
                counter.inc(delta)
                self.reported[role, name] = value

    def score(self, inputs: pd.DataFrame) -> pd.DataFrame:
        """The results for a frame of model inputs (what `eval` does with its Series, callable without Flink)."""
        out: dict[str, Any] = {}
        for role in ROLES:
            loaded = self.models[role].current if role in self.models else None
            if loaded is None:
                out |= {f"{role}_{f}": pd.Series([None] * len(inputs), dtype=object) for f in MODEL_FIELDS}
                continue
            scores, flags, threshold = decide(loaded.model, inputs)
            out |= {
                f"{role}_version": loaded.version,
                f"{role}_score": scores,
                f"{role}_decision": flags,
                f"{role}_threshold": threshold,
            }
        out["scored_ms"] = scored_ms = int(time.time() * 1000)
        results = pd.DataFrame(out, index=inputs.index)
        changes = self._alert_changes(inputs, results, scored_ms)
        if self.counters:
            self._report()
        return pd.concat([results, changes], axis=1)[list(RESULT_TYPES)]

    def _alert_changes(self, inputs: pd.DataFrame, results: pd.DataFrame, scored_ms: int) -> pd.DataFrame:
        """The alert change each row causes (`alert_*` columns, NULL for most rows)."""
        changes = pd.DataFrame(None, index=inputs.index, columns=[f"alert_{f}" for f in ALERT_FIELDS], dtype=object)
        if results["champion_version"].isna().all():
            return changes
        # Only rows that can change a state go through the rule: flagged ones, and the rows of a sensor with flags
        # in its window or an open episode (an unflagged reading of an idle sensor changes nothing).
        flagged = results["champion_decision"].astype(bool)
        busy = {sensor for sensor, state in self.episodes.items() if state.episode or any(state.window)}
        relevant = flagged | inputs["sensor_id"].isin(busy) | (flagged.groupby(inputs["sensor_id"]).cumsum() > 0)
        positions = np.flatnonzero(relevant.to_numpy())
        rows = zip(
            positions.tolist(),
            inputs["sensor_id"].iloc[positions].tolist(),
            alerts.event_ms(inputs["event_time"].iloc[positions]).tolist(),
            flagged.iloc[positions].tolist(),
            results["champion_score"].iloc[positions].tolist(),
            results["champion_version"].iloc[positions].tolist(),
            strict=True,
        )
        for position, sensor, event_ms, flagged_now, score, version in rows:
            reading = alerts.Reading(event_ms, flagged_now, score, version)
            self.episodes[sensor], change = alerts.step(self.episodes.get(sensor), reading, self.rule, sensor)
            if change is not None:
                values = change._asdict() | {"emitted_ms": scored_ms}
                changes.iloc[position] = [values[f] for f in ALERT_FIELDS]
        return changes

    def eval(self, sensor_id: pd.Series, event_time: pd.Series, *columns: pd.Series) -> pd.DataFrame:
        inputs = pd.DataFrame(dict(zip(MODEL_INPUTS, columns, strict=True)))
        return self.score(inputs.assign(sensor_id=sensor_id, event_time=event_time))


def score_udf(cfg: ScoringJobConfig) -> Any:
    from pyflink.table.udf import ScalarFunction, udf

    class _Score(ScoreFunction, ScalarFunction):
        pass

    return udf(_Score(cfg), result_type=_udf_type(), func_type="pandas")


# -- the job in SQL --------------------------------------------------------------------------------------------


def _schema(types: dict[str, str]) -> str:
    return ",\n  ".join(f"`{name}` {kind}" for name, kind in types.items())


def source_ddl(cfg: ScoringJobConfig) -> str:
    """The features topic, as the stream job writes it (JSON), with event time and a watermark."""
    options = kafka_source(cfg, cfg.features_topic, **JSON_VALUES)  # only the stream job writes this topic
    return f"""CREATE TEMPORARY TABLE features_source (
  {feature_schema()},
  features_at TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  WATERMARK FOR event_time AS event_time - INTERVAL '{cfg.watermark_delay_s:g}' SECOND
) {with_options(options)}"""


SCORE_QUERY = (
    "SELECT sensor_id, event_time, is_anomaly, anomaly_type, features_at, "
    f"score_batch(sensor_id, event_time, {', '.join(f'`{c}`' for c in MODEL_INPUTS)}) AS s\n"
    "FROM features_source WHERE sensor_id IS NOT NULL AND event_time IS NOT NULL"
)
"""Each feature row with the UDF's result as one column `s` (materialised once: see `run_job`)."""


def scores_view(cfg: ScoringJobConfig) -> str:
    """`scores`: one row per event and model that scored it (the champion's always, while waiting with NULLs)."""
    parts = []
    for role in ROLES:
        where = "" if role == "champion" else f"\nWHERE s.{role}_version IS NOT NULL"
        parts.append(
            f"SELECT sensor_id, event_time, '{role}' AS role, '{cfg.model_name}' AS model_name, "
            f"s.{role}_version AS model_version, s.{role}_score AS score, s.{role}_decision AS decision, "
            f"s.{role}_threshold AS threshold, is_anomaly, anomaly_type, features_at, "
            "TO_TIMESTAMP_LTZ(s.scored_ms, 3) AS scored_at, rowtime\n"
            f"FROM scored{where}"
        )
    return "CREATE TEMPORARY VIEW scores AS\n" + "\nUNION ALL\n".join(parts)


def metrics_insert(cfg: ScoringJobConfig) -> str:
    """Confusion counts and rates per model version over sliding windows of event time."""

    def rate(num: str, den: str) -> str:
        return f"CAST({num} AS DOUBLE) / NULLIF({den}, 0)"

    counts = {
        "tp": "decision AND is_anomaly",
        "fp": "decision AND NOT is_anomaly",
        "fn": "NOT decision AND is_anomaly",
        "tn": "NOT decision AND NOT is_anomaly",
    }
    counted = ", ".join(f"COUNT(*) FILTER (WHERE {cond}) AS {name}" for name, cond in counts.items())
    window = (
        f"TABLE(HOP(TABLE scores, DESCRIPTOR(rowtime), INTERVAL '{cfg.metrics_slide_s}' SECOND(6), "
        f"INTERVAL '{cfg.metrics_window_s}' SECOND(6)))"
    )
    return f"""INSERT INTO metrics_sink
SELECT window_start, window_end, role, model_name, model_version, tp + fp + fn + tn, tp, fp, fn, tn,
  {rate("tp", "tp + fp")}, {rate("tp", "tp + fn")}, {rate("2 * tp", "2 * tp + fp + fn")}, {rate("fp", "fp + tn")}
FROM (
  SELECT window_start, window_end, role, model_name, model_version, {counted}
  FROM {window} WHERE model_version IS NOT NULL AND decision IS NOT NULL AND is_anomaly IS NOT NULL
  GROUP BY window_start, window_end, role, model_name, model_version)"""


def sink_ddl(cfg: ScoringJobConfig) -> list[str]:
    servers = cfg.bootstrap_servers
    metric_fields = (
        "window_start TIMESTAMP_LTZ(3), window_end TIMESTAMP_LTZ(3), role STRING, model_name STRING, "
        "model_version STRING, events BIGINT, tp BIGINT, fp BIGINT, fn BIGINT, tn BIGINT, "
        "`precision` DOUBLE, recall DOUBLE, f1 DOUBLE, false_alarm_rate DOUBLE"
    )
    sinks = {
        "scores_sink": (_schema(SCORE_FIELDS), cfg.scores_topic, "at-least-once", "sensor_id"),
        "alerts_sink": (_schema(ALERT_TYPES), cfg.alerts_topic, "at-least-once", "sensor_id"),
        "metrics_sink": (metric_fields, cfg.metrics_topic, "exactly-once", "model_version"),
    }
    return [
        f"CREATE TEMPORARY TABLE {table} (\n  {fields}\n) "
        f"{kafka_sink(topic, servers, guarantee, f'{cfg.name}-{table}', key=key)}"
        for table, (fields, topic, guarantee, key) in sinks.items()
    ]


def run_job(cfg: ScoringJobConfig) -> None:
    """Build the job and hand it to the cluster (runs inside `flink run -py`)."""
    from pyflink.table import Schema

    env = table_environment(
        {
            **job_configuration(cfg),
            "python.fn-execution.bundle.size": str(cfg.bundle_size),
            "python.fn-execution.bundle.time": str(cfg.bundle_time_ms),
            "python.fn-execution.arrow.batch.size": str(cfg.bundle_size),
        }
    )
    env.execute_sql(kafka_io.with_password(source_ddl(cfg)))
    env.create_temporary_function("score_batch", score_udf(cfg))
    # Through a DataStream, so that reading several fields of `s` does not call the UDF once per field.
    timed = Schema.new_builder().column_by_metadata("rowtime", "TIMESTAMP_LTZ(3)")
    timed = timed.watermark("rowtime", "SOURCE_WATERMARK()").build()
    env.create_temporary_view("scored", env.from_data_stream(env.to_data_stream(env.sql_query(SCORE_QUERY)), timed))
    env.execute_sql(scores_view(cfg))
    for statement in sink_ddl(cfg):
        env.execute_sql(kafka_io.with_password(statement))
    statements = env.create_statement_set()
    statements.add_insert_sql(f"INSERT INTO scores_sink SELECT {', '.join(SCORE_FIELDS)} FROM scores")
    alert_columns = ", ".join(f"s.alert_{f}" for f in ALERT_FIELDS)
    statements.add_insert_sql(
        f"INSERT INTO alerts_sink SELECT sensor_id, {alert_columns} FROM scored WHERE s.alert_status IS NOT NULL"
    )
    statements.add_insert_sql(metrics_insert(cfg))
    statements.execute()


def parse_job_args(argv: list[str]) -> ScoringJobConfig:
    parser = argparse.ArgumentParser(prog="sensor_scoring")
    parser.add_argument("--config-json", required=True)
    return ScoringJobConfig.from_json(parser.parse_args(argv).config_json)
