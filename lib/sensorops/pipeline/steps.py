"""The task graph: every step with its inputs, retries and timeout, and `run_step`, which runs one of them.

`run_step` is the XCom boundary: it takes the upstream outputs as the dicts Airflow passes, builds the typed
outputs that the step function's parameters are annotated with, runs the step with the run's endpoint overrides
in the environment, and returns the step's output as a dict again.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sensorops import config
from sensorops.errors import ServiceUnavailable, UserError
from sensorops.pipeline import xcom
from sensorops.pipeline.batch import generate_batch
from sensorops.pipeline.checks import validate_data, wait_for_archive
from sensorops.pipeline.context import RunContext, endpoint_environment
from sensorops.pipeline.models import promote_model, train_and_evaluate
from sensorops.pipeline.outputs import ChallengerVerdict, Prepared, ServiceInfo, Services, StreamJobOutput
from sensorops.pipeline.report import write_report

LAZY_TYPES = {"Promotion": "sensorops.registry"}
"""Output classes of modules imported only when a step needs them: `registry` imports MLflow, which takes seconds,
too long for every time Airflow parses the DAG file."""


def check_services(ctx: RunContext) -> Services:
    """Every service answers its protocol; otherwise `ServiceUnavailable` names each one that is down."""
    from sensorops import platform

    try:
        healths = platform.require(*config.ENDPOINT_FIELDS)
    except ServiceUnavailable as exc:
        if not ctx.params.endpoints:
            raise
        overrides = ", ".join(f"{k}={v}" for k, v in ctx.params.endpoints.items())
        raise ServiceUnavailable(f"{exc} (This run's `endpoints` parameter overrides: {overrides}.)") from exc
    return Services(**{name: ServiceInfo(url=h.url, version=h.version) for name, h in healths.items()})


def prepare(ctx: RunContext) -> Prepared:
    """Create the pipeline's topics and buckets where missing."""
    from sensorops import storage, stream

    stream.prepare(stream.StreamJobConfig())
    created = storage.ensure_buckets()
    topics = [config.SENSOR_TOPIC, config.FEATURES_TOPIC, config.AGGREGATES_TOPIC, config.DEAD_LETTER_TOPIC]
    return Prepared(buckets_created=created, topics=topics)


def ensure_stream_job(ctx: RunContext) -> StreamJobOutput:
    """Submit the stream job unless it is running; wait until all its tasks run."""
    from sensorops import stream

    cfg = stream.StreamJobConfig()
    return _ensure_job(cfg.name, lambda: stream.submit(cfg), config.load().flink_rest_url)


def ensure_scoring_job(ctx: RunContext) -> StreamJobOutput:
    """Submit the scoring job unless it is running (it follows the champion alias); wait until all its tasks run."""
    from sensorops import scoring

    cfg = scoring.ScoringJobConfig()
    return _ensure_job(cfg.name, lambda: scoring.submit(cfg), config.load().flink_scoring_rest_url)


def _ensure_job(name: str, submit: Callable[[], tuple[str, bool]], rest_url: str) -> StreamJobOutput:
    """The job `name` running at `rest_url`: submitted if missing, unless the Flink Kubernetes Operator owns the jobs
    (`SENSOROPS_FLINK_JOBS=operator`): then it is only checked, and its absence is the error."""
    from sensorops import flink

    owner = config.load().flink_jobs
    if owner not in ("session", "operator"):
        raise UserError(f"SENSOROPS_FLINK_JOBS={owner!r}: say `session` (the pipeline submits) or `operator`")
    with config.temporary_environment({"FLINK_REST_URL": rest_url}):
        if owner == "operator":
            job_id, started = flink.find_active(name), False
            if not job_id:
                raise ServiceUnavailable(
                    f"no job {name} runs at {rest_url}; the Flink Kubernetes Operator starts it from its "
                    "FlinkDeployment: see `kubectl -n sensorops-data get flinkdeployment` and its events"
                )
        else:
            job_id, started = submit()
        status = flink.wait_running(job_id)
    return StreamJobOutput(
        job_id=job_id, started_now=started, state=status.state, checkpoints_completed=status.checkpoints_completed
    )


def judge_challenger(ctx: RunContext) -> ChallengerVerdict:
    """Promote the shadow-scored `challenger` only if its live F1 beats the champion's over the last 30 minutes."""
    from sensorops.scoring import shadow

    return ChallengerVerdict(**asdict(shadow.judge_and_promote()))


@dataclass(frozen=True)
class Step:
    """One task of the DAG: its function, the upstream outputs it reads, and how Airflow retries and bounds it."""

    name: str
    run: Callable[..., Any]
    """Takes the run context and, as keyword arguments named after the steps in `inputs`, their typed outputs."""
    inputs: tuple[str, ...] = ()
    retries: int = 2
    retry_delay_s: float = 10.0
    timeout_s: float = 300.0

    @property
    def doc(self) -> str:
        """The first line of the step function's docstring."""
        return (self.run.__doc__ or "").strip().splitlines()[0]

    def _annotations(self) -> dict[str, Any]:
        """The step function's annotations as classes (a module of `LAZY_TYPES` imported only if one names it)."""
        written = set(self.run.__annotations__.values())  # names: the package defers annotations
        lazy = {n: getattr(importlib.import_module(m), n) for n, m in LAZY_TYPES.items() if n in written}
        return typing.get_type_hints(self.run, localns=lazy)

    def input_types(self) -> dict[str, type]:
        """The class of each upstream output the step reads: the annotation of its parameter of that name."""
        annotations = self._annotations()
        return {name: annotations[name] for name in self.inputs}

    def output_type(self) -> type:
        """The class of the step's output."""
        return self._annotations()["return"]


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("check_services", check_services, retries=1, retry_delay_s=5, timeout_s=120),  # fails fast when down
        Step("prepare", prepare, timeout_s=120),
        Step("generate_batch", generate_batch, timeout_s=300),
        Step("ensure_stream_job", ensure_stream_job, retries=2, retry_delay_s=30, timeout_s=420),
        Step("wait_for_archive", wait_for_archive, ("generate_batch",), retries=1, timeout_s=900),
        Step("validate_data", validate_data, ("generate_batch",), retries=0, timeout_s=300),
        Step(
            "train_and_evaluate", train_and_evaluate, ("generate_batch",), retries=1, retry_delay_s=30, timeout_s=1200
        ),
        Step("promote_model", promote_model, ("generate_batch", "train_and_evaluate"), timeout_s=600),
        Step("ensure_scoring_job", ensure_scoring_job, retries=2, retry_delay_s=30, timeout_s=420),
        Step("judge_challenger", judge_challenger, timeout_s=120),
        Step(
            "write_report",
            write_report,
            ("generate_batch", "validate_data", "train_and_evaluate", "promote_model"),
            timeout_s=300,
        ),
    )
}
"""The steps in order; the DAG file wires them (check, prepare, then batch and stream job side by side, then ...)."""


def run_step(name: str, ctx: RunContext, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one step with its upstream outputs (XCom dicts), with the run's endpoint overrides applied.

    Returns the step's output as an XCom dict.
    """
    if name not in STEPS:
        raise UserError(f"unknown step {name!r}; the steps are {', '.join(STEPS)}")
    step = STEPS[name]
    given = dict(inputs or {})
    missing = [i for i in step.inputs if given.get(i) is None]
    if missing:
        raise UserError(f"step {name} needs the output of {', '.join(missing)}")
    typed = {}
    for upstream, cls in step.input_types().items():
        try:
            typed[upstream] = xcom.load(cls, given[upstream])
        except UserError as exc:
            raise UserError(f"step {name} cannot read the output of {upstream}: {exc}") from exc
    with config.temporary_environment(endpoint_environment(ctx.params.endpoints)):
        return xcom.dump(step.run(ctx, **typed))
