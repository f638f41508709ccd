"""The four scikit-learn pipelines of the comparison, the parameters searched for each, and what they learned; and
the normal-behaviour detectors (`DETECTORS`, `training.normal`), searched when named."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import OneClassSVM

from sensorops.errors import UserError
from sensorops.training.data import DEFAULT_INPUTS, Inputs
from sensorops.training.normal import NormalIsolationForest, NormalOnlyDetector, PCADetector


def preprocessor(*, scale: bool, inputs: Inputs = DEFAULT_INPUTS) -> ColumnTransformer:
    """Impute (mean, plus a missing-value indicator: a dropout *is* a signal), optionally scale, one-hot encode.

    The mean, not the median: with the indicator beside it the filled value matters little, and scikit-learn's
    median of a column with gaps is fifteen times slower (5 s against 0.3 s on 700,000 rows).
    """
    numeric_steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="mean", add_indicator=True))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), list(inputs.numeric)),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(inputs.categorical)),
        ],
        verbose_feature_names_out=False,
    )


@dataclass(frozen=True)
class ModelSpec:
    """A model of the comparison: how to build its pipeline (`build(seed)`, or `build(seed, inputs)` for inputs other
    than the default) and which parameters to search."""

    name: str
    supervised: bool
    build: Callable[..., BaseEstimator]
    param_grid: dict[str, list]
    note: str = ""


OCSVM_MAX_FIT_ROWS = 5_000
"""OneClassSVM's fit grows with the square of the rows: it sees a random sample of this many normal rows."""


def _random_forest(seed: int, inputs: Inputs = DEFAULT_INPUTS) -> Pipeline:
    forest = RandomForestClassifier(
        n_estimators=50, max_samples=0.1, max_features="sqrt", class_weight="balanced_subsample", random_state=seed
    )
    return Pipeline([("prepare", preprocessor(scale=False, inputs=inputs)), ("model", forest)])


def _logistic_regression(seed: int, inputs: Inputs = DEFAULT_INPUTS) -> Pipeline:
    model = LogisticRegression(max_iter=300)
    return Pipeline([("prepare", preprocessor(scale=True, inputs=inputs)), ("model", model)])


def _isolation_forest(seed: int, inputs: Inputs = DEFAULT_INPUTS) -> NormalOnlyDetector:
    forest = IsolationForest(n_estimators=100, max_samples=512, random_state=seed)
    pipeline = Pipeline([("prepare", preprocessor(scale=False, inputs=inputs)), ("model", forest)])
    return NormalOnlyDetector(pipeline, random_state=seed)


def _one_class_svm(seed: int, inputs: Inputs = DEFAULT_INPUTS) -> NormalOnlyDetector:
    svm = OneClassSVM(kernel="rbf", gamma="scale", cache_size=500)
    pipeline = Pipeline([("prepare", preprocessor(scale=True, inputs=inputs)), ("model", svm)])
    return NormalOnlyDetector(pipeline, max_fit_rows=OCSVM_MAX_FIT_ROWS, random_state=seed)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="random_forest",
            supervised=True,
            build=_random_forest,
            param_grid={"model__max_depth": [16, None], "model__min_samples_leaf": [1, 4]},
            note="each tree sees a 10% bootstrap sample",
        ),
        ModelSpec(
            name="logistic_regression",
            supervised=True,
            build=_logistic_regression,
            param_grid={"model__C": [0.1, 1.0, 10.0], "model__class_weight": [None, "balanced"]},
        ),
        ModelSpec(
            name="isolation_forest",
            supervised=False,
            build=_isolation_forest,
            param_grid={"detector__model__contamination": [0.02, 0.05, 0.1]},
            note="fitted on normal rows only",
        ),
        ModelSpec(
            name="one_class_svm",
            supervised=False,
            build=_one_class_svm,
            param_grid={"detector__model__nu": [0.02, 0.05, 0.1]},
            note=f"fitted on a random sample of {OCSVM_MAX_FIT_ROWS:,} normal rows",
        ),
    )
}


DETECTORS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="pca_spe_t2",
            supervised=False,
            build=lambda seed, inputs=DEFAULT_INPUTS: PCADetector(),
            param_grid={"variance": [0.8, 0.9, 0.95, 0.99], "quantile": [0.9, 0.95, 0.99]},
            note="SPE and Hotelling's T2 of all channels, fitted on normal rows only",
        ),
        ModelSpec(
            name="normal_isolation_forest",
            supervised=False,
            build=lambda seed, inputs=DEFAULT_INPUTS: NormalIsolationForest(random_state=seed),
            param_grid={"quantile": [0.95, 0.99]},
            note="grown on normal rows only, threshold on the training period",
        ),
    )
}
"""Detectors of normal behaviour, searched when named (`--models pca_spe_t2`, or all of them as `detectors`): "all"
stays the four models the default profile's pipeline has always trained."""

TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    *(f"{c.__module__}.{c.__qualname__}" for c in (NormalOnlyDetector, PCADetector, NormalIsolationForest)),
]
"""Types in the saved models that skops does not trust by default (`registry.load_model` trusts these and no
others): the project's own detectors, which it builds and saves itself, by the public path they are saved under."""


def spec(name: str) -> ModelSpec:
    """The spec of a model or detector by name."""
    return {**MODELS, **DETECTORS}[name]


def model_names(names: str | Sequence[str] | None) -> list[str]:
    """Check a model list (`"random_forest,isolation_forest"` or a list; None or "all" for all of `MODELS`, and
    "detectors" for all of `DETECTORS`: `"all,detectors"` is every one)."""
    if names is None or names == "all":
        return list(MODELS)
    groups = {"all": list(MODELS), "detectors": list(DETECTORS)}
    chosen = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    chosen = list(dict.fromkeys(m for n in chosen for m in groups.get(n, [n])))
    unknown = [n for n in chosen if n not in MODELS and n not in DETECTORS]
    if unknown or not chosen:
        known = ", ".join([*MODELS, *DETECTORS, *groups])
        raise UserError(f"unknown model {', '.join(unknown) or '(none)'}; choose from {known}")
    return chosen


def inner_pipeline(model: BaseEstimator) -> Pipeline:
    """The fitted Pipeline inside whatever wraps it (a decision threshold, the normal-only detector)."""
    while not isinstance(model, Pipeline):
        model = model.estimator_ if hasattr(model, "estimator_") else model.detector_
    return model


def feature_importance(model: BaseEstimator) -> pd.Series:
    """Importance per transformed input: impurity decrease for a forest, |coefficient| for a linear model."""
    pipeline = inner_pipeline(model)
    estimator = pipeline.named_steps["model"]
    if "prepare" not in pipeline.named_steps:  # the detectors of normal behaviour: statistics, not importances
        raise UserError(f"{type(model).__name__} has no feature importance")
    names = pipeline.named_steps["prepare"].get_feature_names_out()
    if hasattr(estimator, "feature_importances_"):
        values = estimator.feature_importances_
    elif hasattr(estimator, "coef_"):
        values = np.abs(np.ravel(estimator.coef_))
    else:
        raise UserError(f"{type(estimator).__name__} has no feature importance")
    return pd.Series(values, index=names, name="importance").sort_values(ascending=False)
