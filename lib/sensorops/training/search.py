"""The search: a grid over each model's parameters on time-ordered folds, a tuned threshold, one refit, and the
choice of the best model on the training period."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.metrics import get_scorer
from sklearn.model_selection import FixedThresholdClassifier, GridSearchCV, TunedThresholdClassifierCV
from threadpoolctl import threadpool_limits

from sensorops.errors import UserError
from sensorops.training.data import (
    DEFAULT_INPUTS,
    TIME_COLUMN,
    Inputs,
    TimeSplit,
    features_and_labels,
    require_both_classes,
    time_folds,
    validate,
)
from sensorops.training.evaluation import Evaluation, evaluate_model
from sensorops.training.models import inner_pipeline, model_names, spec

log = logging.getLogger(__name__)

DEFAULT_MAX_SEARCH_ROWS = 200_000


@dataclass
class SearchResult:
    """The best pipeline of one model, refitted on the whole training period, and its test metrics."""

    name: str
    supervised: bool
    model: BaseEstimator
    best_params: dict
    cv_f1: float
    cv_results: pd.DataFrame = field(repr=False)
    evaluation: Evaluation = field(repr=False)
    train_rows: int
    search_rows: int
    fit_rows: int
    search_seconds: float
    fit_seconds: float
    note: str = ""


class _CountingScorer:
    """F1 scorer that also ticks a callback once per scored fold (the progress bar of the search)."""

    def __init__(self, tick: Callable[[], None] | None):
        self._f1 = get_scorer("f1")
        self._tick = tick
        self._lock = threading.Lock()

    def __call__(self, estimator: BaseEstimator, X: pd.DataFrame, y: np.ndarray) -> float:
        score = self._f1(estimator, X, y)
        if self._tick:
            with self._lock:
                self._tick()
        return score


def fits_per_model(name: str, n_folds: int) -> int:
    """How many fits the search of `name` scores (candidates times folds)."""
    grid = spec(name).param_grid
    return int(np.prod([len(v) for v in grid.values()])) * n_folds


def _search_sample(train: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most `max_rows` rows of `train`, drawn at random and kept in time order."""
    if max_rows is None or len(train) <= max_rows:
        return train
    return train.sample(n=max_rows, random_state=seed).sort_values(TIME_COLUMN, kind="stable")


def _use_cores(model: BaseEstimator, n_jobs: int) -> None:
    """Let the tree ensembles inside `model` build their trees on `n_jobs` threads."""
    params = model.get_params(deep=True)
    ensembles = (RandomForestClassifier, IsolationForest)
    keys = [k for k in params if k.endswith("__n_jobs") and isinstance(params[k.removesuffix("__n_jobs")], ensembles)]
    model.set_params(**dict.fromkeys(keys, n_jobs))


def search_model(
    name: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    n_folds: int = 3,
    n_jobs: int = 1,
    max_search_rows: int | None = DEFAULT_MAX_SEARCH_ROWS,
    seed: int = 42,
    tick: Callable[[], None] | None = None,
    inputs: Inputs = DEFAULT_INPUTS,
) -> SearchResult:
    """Grid-search one model on time-ordered folds, pick its threshold, refit on all of `train`, score on `test`.

    The folds are cut in time, each with normal rows and anomalies (`time_folds`). The search runs on at most
    `max_search_rows` training rows (a random sample, in time order); the chosen parameters are then refitted on
    every training row. A supervised model's decision threshold is the one with the best F1 on the last fold, for a
    model fitted on the folds before it (the default 0.5 is rarely the best). `inputs` are the columns the models
    see (default `MODEL_INPUTS`).
    """
    model_spec = spec(name)
    validate(train, what="the training period", inputs=inputs)
    X, y = features_and_labels(train, inputs)
    if model_spec.supervised:
        require_both_classes(pd.Series(y), what="the training period")
    sample = _search_sample(train, max_search_rows, seed)
    X_search, y_search = features_and_labels(sample, inputs)
    folds = time_folds(sample[TIME_COLUMN], n_folds, y_search)
    search = GridSearchCV(
        model_spec.build(seed, inputs),
        model_spec.param_grid,
        scoring=_CountingScorer(tick),
        cv=folds,
        n_jobs=n_jobs,
        refit=False,
        error_score="raise",
    )
    started = time.perf_counter()
    # Threads, not processes: the folds share the training frame instead of copying it to each worker, and the
    # scorer's progress ticks reach this process. The heavy parts (trees, libsvm) release the GIL.
    # Multithreaded BLAS only slows these small matrix products down (four times, measured): one thread each.
    with joblib.parallel_config(backend="threading"), threadpool_limits(limits=1, user_api="blas"):
        search.fit(X_search, y_search)
        results = pd.DataFrame(search.cv_results_)
        best = results.sort_values(["rank_test_score", "mean_fit_time"]).iloc[0]
        best_params = dict(best["params"])
        model = model_spec.build(seed, inputs).set_params(**best_params)
        threshold = None
        if model_spec.supervised:
            tuner = TunedThresholdClassifierCV(clone(model), scoring="f1", cv=[folds[-1]], refit=False)
            threshold = float(tuner.fit(X_search, y_search).best_threshold_)
            model = FixedThresholdClassifier(model, threshold=threshold, response_method="predict_proba")
        search_seconds = time.perf_counter() - started
        _use_cores(model, n_jobs)  # the final fit runs alone
        started = time.perf_counter()
        model.fit(X, y)
        fit_seconds = time.perf_counter() - started
        # Predict on one thread: a forest summed over threads adds its trees' probabilities in varying order, and the
        # last-bit differences (measured: 2e-16) reorder tied scores, so ROC-AUC and PR-AUC differ from run to run.
        for _, step in inner_pipeline(model).steps:  # the fitted copy: wrappers fit clones of what they wrap
            if isinstance(step, (RandomForestClassifier, IsolationForest)):
                step.n_jobs = 1
    fit_rows = getattr(model, "n_fit_rows_", len(X))
    cv_f1 = float(best["mean_test_score"])
    log.info(
        "%s: best %s, threshold %s, cv F1 %.3f, search %.1fs, refit %.1fs",
        name,
        best_params,
        threshold,
        cv_f1,
        search_seconds,
        fit_seconds,
    )
    return SearchResult(
        name=name,
        supervised=model_spec.supervised,
        model=model,
        best_params={**best_params, **({"threshold": round(threshold, 4)} if threshold is not None else {})},
        cv_f1=cv_f1,
        cv_results=results,
        evaluation=evaluate_model(model, test),
        train_rows=len(X),
        search_rows=len(sample),
        fit_rows=int(fit_rows),
        search_seconds=search_seconds,
        fit_seconds=fit_seconds,
        note=model_spec.note,
    )


def train_models(
    split: TimeSplit,
    models: str | Sequence[str] | None = None,
    *,
    n_folds: int = 3,
    n_jobs: int = 1,
    max_search_rows: int | None = DEFAULT_MAX_SEARCH_ROWS,
    seed: int = 42,
    progress: bool = True,
    inputs: Inputs = DEFAULT_INPUTS,
) -> list[SearchResult]:
    """Search every model in `models` on the split, with one progress bar over all the fits."""
    from tqdm.auto import tqdm

    names = model_names(models)
    total = sum(fits_per_model(n, n_folds) for n in names)
    results = []
    with tqdm(total=total, desc="grid search", unit="fit", disable=not progress) as bar:
        for name in names:
            bar.set_postfix_str(name)
            result = search_model(
                name,
                split.train,
                split.test,
                n_folds=n_folds,
                n_jobs=n_jobs,
                max_search_rows=max_search_rows,
                seed=seed,
                tick=lambda: bar.update(1),
                inputs=inputs,
            )
            results.append(result)
    return results


def comparison(results: Sequence[SearchResult], baseline: dict[str, Evaluation] | None = None) -> pd.DataFrame:
    """One row per model and baseline: test metrics, CV F1, and how long the search took."""
    rows = []
    for name, evaluation in (baseline or {}).items():
        rows.append({"model": name, "kind": "baseline", **evaluation.metrics})
    for r in results:
        kind = "supervised" if r.supervised else "unsupervised"
        row = {"model": r.name, "kind": kind, **r.evaluation.metrics, "cv_f1": r.cv_f1, "search_rows": r.search_rows}
        rows.append({**row, "fit_rows": r.fit_rows, "search_s": r.search_seconds + r.fit_seconds})
    return pd.DataFrame(rows).set_index("model")


def best_result(results: Sequence[SearchResult]) -> SearchResult:
    """The model with the best cross-validated F1: chosen on the training period, never on the test period."""
    if not results:
        raise UserError("no model was trained")
    return max(results, key=lambda r: r.cv_f1)
