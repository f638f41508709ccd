"""The steps of the Airflow DAG `sensor_mlops_pipeline`, as plain functions of the library.

Each step takes the run's `RunContext` and the typed outputs of the steps it reads, and returns its own output, a
frozen dataclass. Airflow passes outputs along as XComs (JSON-able dicts): `run_step` converts at that boundary.
The DAG only wires the steps together, so the same code runs from a notebook, from the command line
(`python -m sensorops.pipeline STEP ...`, what a Kubernetes pod runs) and in the Airflow worker.

Safe to retry, even after an attempt killed at any point (`faults` kills one on purpose, for the drills).
`generate_batch` returns the run's manifest if it is stored, and otherwise produces only the events of the run's
batch that are not in the topic yet; `train_and_evaluate` and `promote_model` find what an earlier attempt logged in
MLflow, and promotion still makes its champion decision; the report is overwritten in place.

    context   RunParams, RunContext, the execution mode, endpoint overrides
    outputs   the typed step outputs; xcom: them as dicts and back
    batch     producing the batch once per run, finding it in the archive and the dead-letter topic
    faults    the drill hook: kill a step at a chosen point, once per run (`RunParams.fault`)
    store     the run's objects in S3 (plan, manifest, report) and `download`, to open the report
    checks    wait_for_archive, validate_data and its data checks
    models    train_and_evaluate, promote_model (MLflow)
    report    the HTML run report
    steps     the other steps, Step, STEPS and run_step
    pod       the command line of a step's pod (`__main__`)
    operators the Airflow operators the DAGs build (imported by Airflow only)
"""

from sensorops.pipeline.batch import corrupt, generate_batch
from sensorops.pipeline.checks import DataValidationError, validate_data, wait_for_archive
from sensorops.pipeline.context import (
    DAG_ID,
    DEFAULT_IMAGE,
    ENDPOINT_VARIABLES,
    EXECUTION_ENV,
    FAULTS,
    IMAGE_ENV,
    MODES,
    NAMESPACE_ENV,
    REPORT_BUCKET,
    SCHEDULE_VARIABLE,
    SECRET_ENV,
    RunContext,
    RunParams,
    endpoint_environment,
    execution_mode,
    scheduled_run_goes_on,
)
from sensorops.pipeline.models import promote_model, train_and_evaluate
from sensorops.pipeline.outputs import (
    ArchiveCounts,
    ArchiveWait,
    BatchManifest,
    ChallengerVerdict,
    Check,
    Prepared,
    ReportOutput,
    ServiceInfo,
    Services,
    StreamJobOutput,
    Trained,
    Validation,
)
from sensorops.pipeline.pod import main, parse_args, pod_arguments
from sensorops.pipeline.report import render_report, write_report
from sensorops.pipeline.steps import (
    STEPS,
    Step,
    check_services,
    ensure_scoring_job,
    ensure_stream_job,
    judge_challenger,
    prepare,
    run_step,
)
from sensorops.pipeline.store import download

__all__ = [
    "DAG_ID",
    "DEFAULT_IMAGE",
    "ENDPOINT_VARIABLES",
    "EXECUTION_ENV",
    "FAULTS",
    "IMAGE_ENV",
    "MODES",
    "NAMESPACE_ENV",
    "REPORT_BUCKET",
    "SCHEDULE_VARIABLE",
    "SECRET_ENV",
    "STEPS",
    "ArchiveCounts",
    "ArchiveWait",
    "BatchManifest",
    "Check",
    "DataValidationError",
    "Prepared",
    "ReportOutput",
    "RunContext",
    "RunParams",
    "ServiceInfo",
    "Services",
    "Step",
    "StreamJobOutput",
    "ChallengerVerdict",
    "Trained",
    "Validation",
    "check_services",
    "corrupt",
    "download",
    "endpoint_environment",
    "ensure_scoring_job",
    "ensure_stream_job",
    "judge_challenger",
    "execution_mode",
    "generate_batch",
    "main",
    "parse_args",
    "pod_arguments",
    "prepare",
    "promote_model",
    "render_report",
    "run_step",
    "scheduled_run_goes_on",
    "train_and_evaluate",
    "validate_data",
    "wait_for_archive",
    "write_report",
]
