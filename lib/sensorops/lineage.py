"""What a model was trained on, logged with its MLflow run: the archive's partitions read, the training and testing
periods (`lineage.json`, which `registry.lineage_of` reads back), and both frames as MLflow dataset inputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlflow

from sensorops import training


def periods(split: training.TimeSplit) -> dict[str, str]:
    """The training and testing periods and the cutoff, as text (run parameters, `lineage.json`)."""
    (train_from, train_to), (test_from, test_to) = split.train_period, split.test_period
    return {
        "train_from": str(train_from),
        "train_to": str(train_to),
        "test_from": str(test_from),
        "test_to": str(test_to),
        "cutoff": str(split.cutoff),
    }


def datasets(split: training.TimeSplit, partitions: Sequence[str], inputs: Sequence[str]) -> dict[str, Any]:
    """The training and testing frames (`inputs`, time, label, type) as MLflow datasets, by context. Each infers its
    schema once, when first logged: seconds for a day of readings, so a session logs the same ones for every run."""
    source = partitions[0].rsplit("/dt=", 1)[0] if partitions else "memory"
    return {
        context: mlflow.data.from_pandas(
            frame[[training.TIME_COLUMN, *inputs, training.LABEL_COLUMN, training.TYPE_COLUMN]],
            source=source,
            targets=training.LABEL_COLUMN,
            name=f"features-{context}",
        )
        for context, frame in (("training", split.train), ("testing", split.test))
    }


def log(split: training.TimeSplit, partitions: Sequence[str], by_context: dict[str, Any]) -> None:
    """The S3 partitions (or files) read, as an artifact, and `datasets` (`by_context`) as the run's MLflow inputs."""
    mlflow.log_dict({"partitions": list(partitions), **periods(split)}, "lineage.json")
    for context, dataset in by_context.items():
        mlflow.log_input(dataset, context=context)
