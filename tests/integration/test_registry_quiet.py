"""The registry's calls leave nothing of MLflow's own chatter in a notebook's outputs (the book's pages show them)."""

from __future__ import annotations

import uuid

import mlflow
import pytest
from sklearn.dummy import DummyClassifier

from sensorops import registry

pytestmark = pytest.mark.integration


def test_registering_and_copying_print_nothing_where_mlflow_would(capfd) -> None:
    client = registry.client()
    name = f"test-quiet-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(name)
    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model")
    capfd.readouterr()
    try:
        mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
        assert "Created version" in capfd.readouterr().err  # what MLflow prints by itself
        assert registry.copy_version(f"models:/{name}/1", name) == "2"
        assert capfd.readouterr().err == ""
    finally:
        client.delete_registered_model(name)
        client.delete_experiment(run.info.experiment_id)
