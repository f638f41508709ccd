"""Training anomaly detectors on a feature table: split by time, search, evaluate (no I/O: `archive` reads it).

The stream job archives the feature table to `s3://sensor-archive/features/dt=YYYY-MM-DD/hour=HH/`. Training takes a
range of those hourly partitions, trains on the earlier part of the range and tests on the later part (never a random
split across time: rolling features leak neighbouring rows, and the model must work on the future), and compares four
scikit-learn pipelines with two trivial baselines (flag-everything always among them). Detectors that learn normal
behaviour from normal rows only (`normal`) are searched when named. A profile other than the default trains on its
own feature table (`features.FeatureSet`): `Inputs` names the columns its models see, and a fitted model carries
them (`Inputs.of`); `sensor_split` trains on the first part of each sensor's readings instead of one cutoff.

One module per step, all names available here: `data` (the columns, checks and the splits), `models` (the
pipelines and their grids), `evaluation` (metrics and baselines), `episodes` (per-reading and per-episode detection,
shared with `scoring`), `normal` (PCA SPE/T² and isolation forest on normal rows), `search` (grid search, refit, the
best model); `plots` draws the results (import it on its own: it needs plotly).
"""

from __future__ import annotations

from sensorops.training.data import (
    CATEGORICAL_FEATURES,
    DEFAULT_INPUTS,
    EXCLUDED_INPUTS,
    INPUT_KINDS,
    LABEL_COLUMN,
    MODEL_INPUTS,
    NUMERIC_FEATURES,
    REQUIRED_COLUMNS,
    TIME_COLUMN,
    TYPE_COLUMN,
    Inputs,
    TimeSplit,
    features_and_labels,
    model_inputs,
    require_both_classes,
    sensor_split,
    time_folds,
    time_split,
    validate,
)
from sensorops.training.evaluation import (
    MAX_ZSCORE,
    ZSCORE_COLUMNS,
    ZSCORE_THRESHOLD,
    Evaluation,
    anomaly_scores,
    baselines,
    evaluate,
    evaluate_model,
)
from sensorops.training.models import (
    DETECTORS,
    MODELS,
    OCSVM_MAX_FIT_ROWS,
    TRUSTED_TYPES,
    ModelSpec,
    NormalOnlyDetector,
    feature_importance,
    inner_pipeline,
    model_names,
    preprocessor,
    spec,
)
from sensorops.training.normal import NormalIsolationForest, PCADetector, score_by_sensor
from sensorops.training.search import (
    DEFAULT_MAX_SEARCH_ROWS,
    SearchResult,
    best_result,
    comparison,
    fits_per_model,
    search_model,
    train_models,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "DEFAULT_INPUTS",
    "DETECTORS",
    "DEFAULT_MAX_SEARCH_ROWS",
    "EXCLUDED_INPUTS",
    "INPUT_KINDS",
    "LABEL_COLUMN",
    "MAX_ZSCORE",
    "MODELS",
    "MODEL_INPUTS",
    "NUMERIC_FEATURES",
    "OCSVM_MAX_FIT_ROWS",
    "REQUIRED_COLUMNS",
    "TIME_COLUMN",
    "TRUSTED_TYPES",
    "TYPE_COLUMN",
    "ZSCORE_COLUMNS",
    "ZSCORE_THRESHOLD",
    "Evaluation",
    "Inputs",
    "ModelSpec",
    "NormalIsolationForest",
    "NormalOnlyDetector",
    "PCADetector",
    "SearchResult",
    "TimeSplit",
    "anomaly_scores",
    "baselines",
    "best_result",
    "comparison",
    "evaluate",
    "evaluate_model",
    "feature_importance",
    "features_and_labels",
    "fits_per_model",
    "inner_pipeline",
    "model_inputs",
    "model_names",
    "preprocessor",
    "require_both_classes",
    "score_by_sensor",
    "search_model",
    "sensor_split",
    "spec",
    "time_folds",
    "time_split",
    "train_models",
    "validate",
]
