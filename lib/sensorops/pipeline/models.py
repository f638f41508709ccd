"""Training on the run's batch and promoting the best model: the MLflow steps.

Safe to retry: `train_and_evaluate` finds the parent MLflow run that an earlier attempt of the same Airflow run
finished (tagged with its run id) and returns what it logged there; `promote_model` finds the version an earlier
attempt registered and reports it instead of registering the model twice.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from sensorops.errors import UserError
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
    client = registry.client()
    versions = client.search_model_versions(f"name = '{registry.MODEL_NAME}' and run_id = '{trained.model_run_id}'")
    if versions:  # an earlier attempt registered it: report, do not register twice
        version = str(versions[0].version)
        champion = registry.current_champion()
        score = float(versions[0].tags.get(f"test_{registry.SELECTION_METRIC}", "nan"))
        return registry.Promotion(
            model_name=registry.MODEL_NAME,
            version=version,
            score=score,
            champion_version=champion,
            champion_score=None,
            promoted=champion == version,
            reason="registered by an earlier attempt of this run",
        )
    split = training.time_split(training_data(generate_batch).features)
    logged = registry.LoggedModel(name=trained.best_model, run_id=trained.model_run_id, model_uri=trained.model_uri)
    return registry.register_and_promote(logged, split.test)
