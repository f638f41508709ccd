"""Training on the run's batch and promoting the best model: the MLflow steps.

Safe to retry: `train_and_evaluate` finds the parent MLflow run that an earlier attempt of the same Airflow run
finished (tagged with its run id once its output is logged) and returns what it logged there; `promote_model` finds
the version an earlier attempt registered from the same model run instead of registering it twice, and makes the
champion decision on it all the same (a version that is the champion already stays it). The decision fails, to be
retried, when the registry cannot say who the champion is or fetch it; only "no champion" promotes unopposed.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from sensorops.errors import UserError
from sensorops.pipeline import faults
from sensorops.pipeline.batch import BatchRows, batch_rows
from sensorops.pipeline.context import RunContext
from sensorops.pipeline.outputs import BatchManifest, Trained

if TYPE_CHECKING:
    from sensorops.registry import Promotion

log = logging.getLogger(__name__)

TRAINED_ARTIFACT = "pipeline/train.json"
"""Where the parent MLflow run keeps the step's output, for a retry."""


def training_data(batch: BatchManifest) -> BatchRows:
    """The batch's rows in the archive; refused if it has no feature rows."""
    rows = batch_rows(batch)
    if rows.features.empty:
        raise UserError(f"no feature rows archived for the batch from {batch.start} to {batch.end}")
    return rows


def _find_session(ctx: RunContext) -> str | None:
    """The parent MLflow run an earlier attempt of this Airflow run finished, if any."""
    from sensorops import registry

    client = registry.client()
    experiment = client.get_experiment_by_name(registry.EXPERIMENT)
    if experiment is None:
        return None
    same_run = f"tags.`sensorops.airflow_run_id` = '{ctx.run_id}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([experiment.experiment_id], max_results=1, filter_string=same_run)
    return runs[0].info.run_id if runs else None


def train_and_evaluate(ctx: RunContext, generate_batch: BatchManifest) -> Trained:
    """Train the models on the batch (split by time), log them to MLflow under one parent run, pick the best."""
    import mlflow

    from sensorops import registry, training

    earlier = _find_session(ctx)
    if earlier:
        log.info("MLflow run %s already holds this run's training; reusing it", earlier)
        registry.client()
        return Trained.from_xcom(json.loads(mlflow.artifacts.load_text(f"runs:/{earlier}/{TRAINED_ARTIFACT}")))
    rows = training_data(generate_batch)
    split = training.time_split(rows.features)
    results = training.train_models(split, ctx.params.models, n_jobs=2, seed=ctx.params.seed, progress=False)
    baselines = training.baselines(split.test)
    session = registry.log_session(results, split, rows.partitions, baselines, run_name=f"airflow-{ctx.slug}")
    best = training.best_result(results)
    logged = session.models[best.name]
    trained = Trained(
        mlflow_run_id=session.run_id,
        mlflow_url=registry.run_url(session.run_id),
        best_model=best.name,
        model_run_id=logged.run_id,
        model_uri=logged.model_uri,
        partitions=rows.partitions,
        train_rows=len(split.train),
        test_rows=len(split.test),
        test_metrics=best.evaluation.metrics,
        cv_f1=best.cv_f1,
    )
    client = registry.client()
    client.log_text(session.run_id, json.dumps(trained.to_xcom(), indent=2), TRAINED_ARTIFACT)
    for key, value in {"sensorops.airflow_dag_id": ctx.dag_id, "sensorops.airflow_run_id": ctx.run_id}.items():
        client.set_tag(session.run_id, key, value)
    return trained


def promote_model(ctx: RunContext, generate_batch: BatchManifest, train_and_evaluate: Trained) -> Promotion:
    """Register the best model; move the champion alias to it only if it beats the champion on this test period."""
    from sensorops import registry, training

    trained = train_and_evaluate
    split = training.time_split(training_data(generate_batch).features)
    logged = registry.LoggedModel(name=trained.best_model, run_id=trained.model_run_id, model_uri=trained.model_uri)
    run_tags = {"sensorops.airflow_dag_id": ctx.dag_id, "sensorops.airflow_run_id": ctx.run_id}
    registered = registry.register_version(logged, split.test, reuse=True, tags=run_tags)
    if not registered.new:
        log.info("version %s was registered by an earlier attempt of this run; deciding on it", registered.version)
    faults.inject(ctx, "after:register")
    return registry.promote_if_better(registered, split.test)
