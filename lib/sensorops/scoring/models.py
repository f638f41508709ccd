"""The model a scoring worker holds: an alias resolved to a pinned version, polled, and swapped only once loaded.

`LiveModel` is what each Python worker of the scoring job keeps (one per worker, loaded once): a background thread
asks the registry every `poll_s` seconds which version an alias points to, loads a new version completely before
it replaces the current one, and keeps the current one whenever the registry cannot answer (the failure is
counted). `decide` turns a model's output into score, decision and threshold, the same way for every
kind of model the training compares.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.model_selection import FixedThresholdClassifier

from sensorops.training.data import MODEL_INPUTS
from sensorops.training.evaluation import anomaly_scores

log = logging.getLogger(__name__)


def decide(model: BaseEstimator, inputs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """Anomaly scores, decisions (True: anomalous) and the threshold between them, as `model.predict` decides.

    A tuned classifier flags a probability at or above its threshold, a plain classifier one above 0.5, a
    normal-only detector a score above 0; the score is computed once (a second `predict` would run the forest again).
    """
    scores = anomaly_scores(model, inputs[list(MODEL_INPUTS)])
    if isinstance(model, FixedThresholdClassifier):
        return scores, scores >= model.threshold, float(model.threshold)
    threshold = 0.5 if hasattr(model, "predict_proba") else 0.0
    return scores, scores > threshold, threshold


@dataclass(frozen=True)
class Loaded:
    """A model version in memory."""

    name: str
    version: str
    model: BaseEstimator


Resolve = Callable[[str, str], "str | None"]
"""(model name, alias) -> the version the alias points to, None if there is none; raises if the registry is down."""
Load = Callable[[str, str], BaseEstimator]
"""(model name, version) -> the fitted model."""


class LiveModel:
    """A registry alias, followed: `current` is the version in use, None until the alias exists.

    `refresh` is one poll; `follow` polls in a background thread, so that neither a slow registry nor a model
    being downloaded ever holds up scoring, which reads `current` (one attribute: swapped atomically).
    """

    def __init__(self, name: str, alias: str, resolve: Resolve, load: Load, poll_s: float = 30.0) -> None:
        self.name, self.alias, self.poll_s = name, alias, poll_s
        self._resolve, self._load = resolve, load
        self.current: Loaded | None = None
        self.failures = 0
        """Polls or loads that failed (registry unreachable, model unloadable); the current model kept scoring."""
        self.swaps = 0
        self._stop = threading.Event()

    def refresh(self) -> Loaded | None:
        """Ask the registry where the alias points; load a new version completely, then swap it in."""
        try:
            version = self._resolve(self.name, self.alias)
            if version is not None and (self.current is None or version != self.current.version):
                loaded = Loaded(self.name, version, self._load(self.name, version))
                log.info("models:/%s@%s is version %s (was %s)", self.name, self.alias, version, self.version)
                self.swaps += self.current is not None
                self.current = loaded
        except Exception as exc:  # whatever the registry or the model does, the current model keeps scoring
            self.failures += 1
            log.warning("models:/%s@%s not refreshed, keeping version %s: %s", self.name, self.alias, self.version, exc)
        return self.current

    def follow(self) -> threading.Thread:
        """Refresh every `poll_s` seconds (every 5 s at most while there is no model yet) until `stop`."""

        def loop() -> None:
            while not self._stop.wait(self.poll_s if self.current else min(self.poll_s, 5.0)):
                self.refresh()

        thread = threading.Thread(target=loop, name=f"follow {self.name}@{self.alias}", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None


def registry_load(name: str, version: str) -> BaseEstimator:
    """The model of a version, single-threaded: on bundles of a few thousand rows, a thread pool per call (a forest
    trained with `n_jobs=2`) costs more than it saves, and the worker shares the cores with the rest of the job."""
    from sensorops import registry

    model = registry.load_model(f"models:/{name}/{version}")
    return model.set_params(**{key: 1 for key in model.get_params(deep=True) if key.endswith("n_jobs")})
