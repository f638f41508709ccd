"""The model a scoring worker holds: an alias resolved to a pinned version, polled, and swapped only once loaded.

`LiveModel` is what each Python worker of the scoring job keeps (one per worker, loaded once): `refresh` asks the
registry which version an alias points to at most every `poll_s` seconds, loads a new version completely before
it replaces the current one, and keeps scoring with the current one whenever the registry cannot answer (the
failure is counted). `decide` turns a model's output into score, decision and threshold, the same way for every
kind of model the training compares.
"""

from __future__ import annotations

import logging
import time
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
    """A registry alias, followed: `current` is the version in use, None until the alias exists."""

    def __init__(self, name: str, alias: str, resolve: Resolve, load: Load, poll_s: float = 30.0) -> None:
        self.name, self.alias, self.poll_s = name, alias, poll_s
        self._resolve, self._load = resolve, load
        self.current: Loaded | None = None
        self.failures = 0
        """Polls or loads that failed (registry unreachable, model unloadable); the current model kept scoring."""
        self.swaps = 0
        self._checked = -float("inf")

    def refresh(self, now: float | None = None) -> Loaded | None:
        """Poll the alias if `poll_s` has passed (or while no model is loaded) and swap in a new version once it has
        loaded; return the model to score with."""
        now = time.monotonic() if now is None else now
        if self.current is not None and now - self._checked < self.poll_s:
            return self.current
        self._checked = now
        try:
            version = self._resolve(self.name, self.alias)
            if version is not None and (self.current is None or version != self.current.version):
                loaded = Loaded(self.name, version, self._load(self.name, version))
                log.info("models:/%s@%s is version %s (was %s)", self.name, self.alias, version, self.version)
                self.current, self.swaps = loaded, self.swaps + (self.current is not None)
        except Exception as exc:  # whatever the registry or the model does, the current model keeps scoring
            self.failures += 1
            log.warning("models:/%s@%s not refreshed, keeping version %s: %s", self.name, self.alias, self.version, exc)
        return self.current

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None


def registry_resolve(name: str, alias: str) -> str | None:
    from sensorops import registry

    return registry.alias_version(name, alias)


def registry_load(name: str, version: str) -> BaseEstimator:
    from sensorops import registry

    return registry.load_model(f"models:/{name}/{version}")
