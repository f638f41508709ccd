"""What each step returns: frozen dataclasses, which become JSON-able dicts only at the XCom boundary (`xcom`).

Their fields, in order, are the keys of the XComs that the DAG, the tests and notebook 04 read, and of the batch
manifest written to S3. `promote_model` returns `registry.Promotion` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorops.pipeline.xcom import XCom


@dataclass(frozen=True)
class ServiceInfo(XCom):
    """One service that answered its protocol."""

    url: str
    version: str


@dataclass(frozen=True)
class Services(XCom):
    """`check_services`: every service, by the names of `config.ENDPOINT_FIELDS`."""

    kafka: ServiceInfo
    s3: ServiceInfo
    flink: ServiceInfo
    mlflow: ServiceInfo
    airflow: ServiceInfo


@dataclass(frozen=True)
class Prepared(XCom):
    """`prepare`: the buckets it created and the topics that exist."""

    buckets_created: list[str]
    topics: list[str]


@dataclass(frozen=True)
class BatchManifest(XCom):
    """`generate_batch`: the run's batch, enough to find every one of its events again (S3: `batch.json`)."""

    run_id: str
    topic: str
    start: str
    """ISO event time of the first event; `end` of the last."""
    end: str
    events: int
    bad: int
    """Events sent as broken JSON on purpose."""
    acknowledged: int
    produce_seconds: float
    offsets: dict[int, tuple[int, int]]
    """Partition -> [first, end) of the offsets the batch was written to (partitions it did not touch left out)."""
    dead_letter_offsets: dict[int, int]
    """Partition of the dead-letter topic -> its end offset before the batch was produced."""
    anomaly_rate: float
    """Share of anomalies among the valid events."""
    anomaly_types: dict[str, int]
    offset_range: int
    """How many offsets `offsets` spans: the batch's events, plus any other producer's written in between."""


@dataclass(frozen=True)
class StreamJobOutput(XCom):
    """`ensure_stream_job`, `ensure_scoring_job`: the running Flink job."""

    job_id: str
    started_now: bool
    state: str
    checkpoints_completed: int


@dataclass(frozen=True)
class ChallengerVerdict(XCom):
    """`judge_challenger`: the live comparison of `challenger` with `champion`, and whether it was promoted."""

    champion: str | None
    challenger: str | None
    champion_f1: float | None
    challenger_f1: float | None
    events: int
    promote: bool
    """Whether the challenger won, and so took the `champion` alias."""
    reason: str


@dataclass(frozen=True)
class ArchiveCounts(XCom):
    """Where the batch's offsets ended up."""

    archived: int
    dead_letters: int
    duplicates: int
    feature_rows: int

    @property
    def accounted(self) -> int:
        return self.archived + self.dead_letters


@dataclass(frozen=True)
class ArchiveWait(ArchiveCounts):
    """`wait_for_archive`: the counts once the batch was all archived, and how long that took."""

    waited_s: float


@dataclass(frozen=True)
class Check(XCom):
    """One data check: its value and the limit it was held to."""

    name: str
    ok: bool
    value: float
    limit: str
    detail: str


@dataclass(frozen=True)
class Validation(XCom):
    """`validate_data`: every check (all passed, or the step raised), the counts, the dead letters by reason."""

    checks: list[Check]
    counts: ArchiveCounts
    dead_letter_reasons: dict[str, int]
    anomaly_rate: float

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


@dataclass(frozen=True)
class Trained(XCom):
    """`train_and_evaluate`: the MLflow session and its best model (also logged there as `pipeline/train.json`)."""

    mlflow_run_id: str
    mlflow_url: str
    best_model: str
    model_run_id: str
    model_uri: str
    partitions: list[str]
    train_rows: int
    test_rows: int
    test_metrics: dict[str, float]
    cv_f1: float


@dataclass(frozen=True)
class ReportOutput(XCom):
    """`write_report`: where the report is (`store.download(report_uri)` fetches a copy)."""

    report_uri: str
    bytes: int
