"""Experiment tracking and the model registry (MLflow): one run per model, the best one registered, the
`champion` alias moved only when the new model beats the current champion on the same test period."""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.base import BaseEstimator

from sensorops import config, lineage, training
from sensorops.errors import ServiceUnavailable, UserError
from sensorops.training import plots

log = logging.getLogger(__name__)
# MLflow's hint, for each model it logs, that integer columns cannot hold missing values: the 0/1 predictions never do.
warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
# MLflow registers its local-file dataset source twice, so a local path (train --profile on files) warns each time.
warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")

EXPERIMENT = "sensor-anomaly-detection"
MODEL_NAME = "sensor-anomaly-detector"
CHAMPION = "champion"
CHALLENGER = "challenger"
SELECTION_METRIC = "f1"
TRUSTED_TYPES = training.TRUSTED_TYPES
"""Types in our saved models that skops does not trust by default (listed beside the classes, in `training`); skops
checks every other type against its own allow-list when the model is loaded."""
MODEL_REQUIREMENTS = ("numpy", "pandas", "scikit-learn", "scipy", "skops")
"""What loading a logged model needs, written into its requirements.txt at the installed versions. Left to itself,
MLflow loads each model in a subprocess to see what it imports: 7 s per model, and it listed pytest and rich."""


def copy_version(source_uri: str, model_name: str) -> str:
    """Copy a registered version (`models:/NAME@alias`, `models:/NAME/3`) as a new version of `model_name`."""
    with config.mlflow_quietly():
        return str(client().copy_model_version(source_uri, model_name).version)


def client(settings: config.Settings | None = None) -> MlflowClient:
    """An MLflow client on the configured tracking server (also sets the tracking URI for `mlflow.*` calls)."""
    config.quiet_mlflow()
    uri = (settings or config.load()).mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def run_url(run_id: str, settings: config.Settings | None = None) -> str:
    """The page of a run in the MLflow UI."""
    uri = (settings or config.load()).mlflow_tracking_uri.rstrip("/")
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    return f"{uri}/#/experiments/{run.info.experiment_id}/runs/{run_id}"


def load_model(model_uri: str) -> BaseEstimator:
    """A scikit-learn model from the tracking server: `runs:/ID/model`, `models:/NAME@champion`, `models:/m-...`.

    Never unpickled: only a model saved in the skops format loads, and only with the types of `TRUSTED_TYPES`
    (MLflow would take the allow-list from the model's own MLmodel file, which whoever wrote the model controls).
    Anything else is refused with `UserError`, before any of its bytes are deserialised."""
    import skops.io
    from mlflow.models import Model

    client()
    folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    flavor = Model.load(folder / "MLmodel").flavors.get("sklearn", {})
    saved_as = flavor.get("serialization_format", "no scikit-learn flavour")
    if saved_as != "skops":
        raise UserError(
            f"refusing to load {model_uri}: it is saved as {saved_as}, which runs code on loading; "
            "log models with `registry.log_model_run` (skops)"
        )
    path = folder / flavor["pickled_model"]
    unknown = sorted(set(skops.io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if unknown:
        raise UserError(f"refusing to load {model_uri}: it holds types this project does not trust: {unknown}")
    return skops.io.load(path, trusted=TRUSTED_TYPES)


@dataclass(frozen=True)
class LoggedModel:
    """Where one model's run and artifacts live."""

    name: str
    run_id: str
    model_uri: str


def log_model_run(
    result: training.SearchResult,
    split: training.TimeSplit,
    partitions: Sequence[str],
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    commit: str | None = None,
    logged_datasets: dict[str, Any] | None = None,
) -> LoggedModel:
    """One run: parameters, test metrics, the model with signature and input example, lineage, figures.
    `logged_datasets`: this model's `lineage.datasets`, when the session has them already."""
    inputs = training.Inputs.of(result.model)
    X_test, _ = training.features_and_labels(split.test, inputs)
    example = X_test.head(5)
    signature = infer_signature(example, result.model.predict(example))
    tags = {"sensorops.model": result.name, "sensorops.kind": "supervised" if result.supervised else "unsupervised"}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    with mlflow.start_run(
        run_name=run_name or result.name, parent_run_id=parent_run_id, nested=bool(parent_run_id), tags=tags
    ) as run:
        mlflow.log_params(
            {
                "model": result.name,
                **result.best_params,
                "train_rows": result.train_rows,
                "fit_rows": result.fit_rows,
                "test_rows": len(split.test),
                "note": result.note,
                **lineage.periods(split),
            }
        )
        mlflow.log_metrics(
            {
                **result.evaluation.flat(),
                "cv_f1": result.cv_f1,
                "search_seconds": result.search_seconds,
                "fit_seconds": result.fit_seconds,
            }
        )
        lineage.log(split, partitions, logged_datasets or lineage.datasets(split, partitions, inputs.columns))
        info = mlflow.sklearn.log_model(
            result.model,
            name="model",
            signature=signature,
            input_example=example,
            skops_trusted_types=TRUSTED_TYPES,
            pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
        )
        mlflow.log_text(result.cv_results.drop(columns="params").to_csv(index=False), "cv_results.csv")
        mlflow.log_figure(plots.confusion_matrix(result.evaluation, title=result.name), "figures/confusion_matrix.html")
        mlflow.log_figure(plots.precision_recall({result.name: result.evaluation}), "figures/precision_recall.html")
        try:
            importance = training.feature_importance(result.model)
        except UserError:
            importance = None
        if importance is not None:
            mlflow.log_figure(
                plots.feature_importance(importance, title=result.name), "figures/feature_importance.html"
            )
    return LoggedModel(name=result.name, run_id=run.info.run_id, model_uri=info.model_uri)


@dataclass(frozen=True)
class Session:
    """A training session: the parent run (baselines, comparison) and one child run per model."""

    run_id: str
    models: dict[str, LoggedModel]


def log_session(
    results: Sequence[training.SearchResult],
    split: training.TimeSplit,
    partitions: Sequence[str],
    baselines: dict[str, training.Evaluation],
    *,
    experiment: str = EXPERIMENT,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> Session:
    """Log every model as a child of one parent run (tagged with `tags`) that holds the baselines and the table."""
    try:
        client()
        mlflow.set_experiment(experiment)
    except MlflowException as exc:
        raise ServiceUnavailable(
            f"MLflow does not answer at {config.load().mlflow_tracking_uri}: {exc}. Check it with "
            "`sensorops platform status` (start the platform with `make up`)."
        ) from exc
    commit = config.git_commit()
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d-%H%M%S")
    name = run_name or f"train-{stamp}"
    tags = {**(tags or {}), **({"mlflow.source.git.commit": commit} if commit else {})}
    with mlflow.start_run(run_name=name, tags=tags) as parent:
        mlflow.log_params(
            {
                "models": ",".join(r.name for r in results),
                "partitions": len(partitions),
                "train_rows": len(split.train),
                **lineage.periods(split),
            }
        )
        for baseline, evaluation in baselines.items():
            mlflow.log_metrics({f"{baseline}.{k}": v for k, v in evaluation.flat().items()})
        by_inputs = functools.cache(lambda columns: lineage.datasets(split, partitions, columns))
        lineage.log(split, partitions, by_inputs(training.Inputs.of(results[0].model).columns if results else ()))
        table = training.comparison(results, baselines)
        mlflow.log_text(table.to_csv(), "comparison.csv")
        mlflow.log_text(split.balance().to_csv(), "class_balance.csv")
        mlflow.log_figure(plots.comparison(table), "figures/comparison.html")
        pr = {**baselines, **{r.name: r.evaluation for r in results}}
        mlflow.log_figure(plots.precision_recall(pr), "figures/precision_recall.html")
        logged = {
            r.name: log_model_run(
                r,
                split,
                partitions,
                parent_run_id=parent.info.run_id,
                run_name=f"{r.name}-{stamp}",
                commit=commit,
                logged_datasets=by_inputs(training.Inputs.of(r.model).columns),
            )
            for r in results
        }
    return Session(run_id=parent.info.run_id, models=logged)


@dataclass(frozen=True)
class Promotion:
    """What happened in the registry."""

    model_name: str
    version: str
    score: float
    champion_version: str | None
    champion_score: float | None
    promoted: bool
    reason: str


def champion_is_missing(exc: MlflowException) -> bool:
    """Whether the registry's answer means "there is no champion" (no such model, or no such alias).

    Any other error (the server unreachable, a 5xx, a timeout: MLflow reports those as `INTERNAL_ERROR` or
    `TEMPORARILY_UNAVAILABLE`) says nothing about the champion, and must not be taken for its absence."""
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


def alias_version(model_name: str, alias: str) -> str | None:
    """The version `alias` points to, None if the model or the alias does not exist; other errors raise."""
    try:
        return str(client().get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if champion_is_missing(exc):
            return None
        raise


def current_champion(model_name: str = MODEL_NAME) -> str | None:
    """The version the `champion` alias points to, or None if there is none; `ServiceUnavailable` if the registry
    cannot tell."""
    try:
        return alias_version(model_name, CHAMPION)
    except MlflowException as exc:
        raise ServiceUnavailable(
            f"the registry at {config.load().mlflow_tracking_uri} did not say which version of {model_name} is the "
            f"champion ({exc}); not deciding a promotion without it. Check MLflow with `sensorops platform status`."
        ) from exc


@dataclass(frozen=True)
class Registered:
    """A model version and its score on the test period it is compared on."""

    version: str
    score: float
    new: bool
    """Registered by this call (False: found, registered earlier from the same run)."""


def register_version(
    logged: LoggedModel,
    test: pd.DataFrame,
    *,
    model_name: str = MODEL_NAME,
    metric: str = SELECTION_METRIC,
    reuse: bool = False,
    tags: dict[str, str] | None = None,
) -> Registered:
    """Score `logged` on `test` and register it as a version of `model_name`, tagged with its score and period.

    With `reuse`, a version already registered from the same MLflow run is returned instead of a second one (the
    run id is set at registration, so this holds even if the caller died before tagging it)."""
    mlflow_client = client()
    score = training.evaluate_model(load_model(logged.model_uri), test).metrics[metric]
    same_run = f"name = '{model_name}' and run_id = '{logged.run_id}'"
    found = mlflow_client.search_model_versions(same_run) if reuse else []
    if found:
        version, new = str(min(int(v.version) for v in found)), False
    else:
        with config.mlflow_quietly():
            version, new = str(mlflow.register_model(logged.model_uri, model_name).version), True
    (test_from, test_to) = test[training.TIME_COLUMN].min(), test[training.TIME_COLUMN].max()
    for key, value in {
        "model": logged.name,
        "run_id": logged.run_id,
        f"test_{metric}": f"{score:.6f}",
        "test_from": str(test_from),
        "test_to": str(test_to),
        **(tags or {}),
    }.items():
        mlflow_client.set_model_version_tag(model_name, version, key, value)
    return Registered(version=version, score=score, new=new)


def champion_score(
    champion: str,
    test: pd.DataFrame,
    *,
    model_name: str = MODEL_NAME,
    metric: str = SELECTION_METRIC,
    load: Callable[[str], BaseEstimator] | None = None,
) -> tuple[float | None, str]:
    """The champion's score on `test`, or (None, why) if that model cannot score it: a permanent reason to replace it.

    A failure to fetch the champion (registry or S3 unreachable) is no such reason: it raises `ServiceUnavailable`,
    so the step fails and is retried instead of promoting a challenger that was never compared. `load` defaults to
    `load_model`."""
    load = load or load_model
    try:
        model = load(f"models:/{model_name}/{champion}")
    except ServiceUnavailable:
        raise
    except UserError as exc:  # refused by load_model (not skops, untrusted types): it never will load
        return None, f"the champion (version {champion}) cannot be loaded: {exc}"
    except Exception as exc:
        raise ServiceUnavailable(
            f"could not fetch the champion (version {champion} of {model_name}) to compare with: "
            f"{type(exc).__name__}: {exc}; not promoting without a comparison"
        ) from exc
    try:
        return training.evaluate_model(model, test).metrics[metric], ""
    except (ValueError, KeyError) as exc:
        return None, f"the champion (version {champion}) cannot score this data: {exc}"


def decide(
    version: str,
    score: float,
    champion: str | None,
    champion_score: float | None,
    unscored: str = "",
    metric: str = SELECTION_METRIC,
) -> tuple[bool, str]:
    """Whether `version` (scoring `score`) becomes the champion, and why. A tie keeps the champion."""
    if champion is None:
        return True, "no champion yet"
    if champion == version:
        return True, f"version {version} is the champion already (an earlier attempt promoted it)"
    if champion_score is None:
        return True, unscored or f"the champion (version {champion}) has no score"
    promoted = score > champion_score
    verb = "beats" if promoted else "does not beat"
    return promoted, f"{metric} {score:.4f} {verb} the champion's {champion_score:.4f} on the same test period"


def promote_if_better(
    registered: Registered,
    test: pd.DataFrame,
    *,
    model_name: str = MODEL_NAME,
    metric: str = SELECTION_METRIC,
) -> Promotion:
    """Move `champion` to the version if it beats the champion on `test`; record the decision in its tags.

    Both are scored on the same rows (the champion is loaded and evaluated again, not compared by its logged
    metric, which came from another test period). Safe to repeat: a version that is the champion already stays it.
    """
    version, score = registered.version, registered.score
    champion = current_champion(model_name)
    scored, unscored = None, ""
    if champion is not None and champion != version:
        scored, unscored = champion_score(champion, test, model_name=model_name, metric=metric)
    promoted, reason = decide(version, score, champion, scored, unscored, metric)
    mlflow_client = client()
    if champion != version:  # else an earlier attempt recorded its decision, then moved the alias
        decision = {"decision": "promoted" if promoted else "kept", "reason": reason, "before": champion or "none"}
        for key, value in decision.items():
            mlflow_client.set_model_version_tag(model_name, version, f"champion_{key}", value[:5000])
    if promoted and champion != version:
        mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
    log.info("%s version %s: %s", model_name, version, reason)
    return Promotion(
        model_name=model_name,
        version=version,
        score=score,
        champion_version=champion,
        champion_score=scored,
        promoted=promoted,
        reason=reason,
    )


def register_and_promote(
    logged: LoggedModel,
    test: pd.DataFrame,
    *,
    model_name: str = MODEL_NAME,
    metric: str = SELECTION_METRIC,
) -> Promotion:
    """Register `logged` as a new version; move `champion` to it only if it beats the champion on `test`."""
    registered = register_version(logged, test, model_name=model_name, metric=metric)
    return promote_if_better(registered, test, model_name=model_name, metric=metric)


def models_table(session: Session, results: Sequence[training.SearchResult]) -> pd.DataFrame:
    """Each model's test F1 and the link to its run in the MLflow UI."""
    rows = [
        {"model": r.name, "f1": r.evaluation.metrics["f1"], "run": run_url(session.models[r.name].run_id)}
        for r in results
    ]
    return pd.DataFrame(rows).set_index("model")


def lineage_of(run_id: str) -> dict:
    """The lineage a run logged (`lineage.json`)."""
    client()
    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/lineage.json"))
