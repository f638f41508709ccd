"""Drift the generator can inject (`generator.simulate(drift=...)`, `sensorops generate --drift`): a firmware update
that offsets some sensors' channels, or a change of season that moves every room's climate.

It starts `at_s` seconds into event time (over `ramp_s`; 0 for a step) and draws from its own random stream, so
noise and anomalies are the same with and without it. `MAX_DRIFT_SIZE` keeps every reading within the event schema.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sensorops.errors import UserError
from sensorops.events import CHANNELS

DRIFT_SIZES = {"firmware": 3.0, "season": -3.0}
"""The default size of each kind: +3 units on the updated sensors' channels; 3 degC colder."""
SEASON_RH_PER_DEGREE = 2.5
"""How much the relative humidity rises (%RH) per degree of a season's change."""
FIRMWARE_SUFFIX = "-ota"
"""Appended to an updated sensor's firmware version from the update on."""
MAX_DRIFT_SIZE = 50.0
"""21 +- 12 degC + 50 stays within the schema's -60..120."""


@dataclass(frozen=True)
class DriftConfig:
    """A ``firmware`` update offsets `channels` of a seeded `share` of the sensors by `size` units; a ``season``
    makes every room `size` degC warmer and `SEASON_RH_PER_DEGREE` %RH per degree more humid."""

    kind: str = "firmware"
    at_s: float = 0.0
    size: float | None = None  # default DRIFT_SIZES[kind]
    share: float = 0.3
    channels: tuple[str, ...] = ("temperature",)
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", DRIFT_SIZES.get(self.kind, 0.0) if self.size is None else self.size)
        if self.kind not in DRIFT_SIZES or not self.channels or not set(self.channels) <= set(CHANNELS):
            raise UserError(
                f"a drift is firmware or season of {', '.join(CHANNELS)}, not {self.kind} of {self.channels}"
            )
        if not (abs(self.size) <= MAX_DRIFT_SIZE and self.at_s >= 0 and self.ramp_s >= 0 and 0 < self.share <= 1):
            raise UserError(f"a drift needs |size| <= {MAX_DRIFT_SIZE:g}, time and ramp >= 0 s, share in (0, 1]")

    def sensors(self, n: int, seed: int) -> np.ndarray:
        """Which of `n` sensors drift (bool, n): a seeded share for a firmware update, all of them for a season."""
        share = self.share if self.kind == "firmware" else 1.0
        chosen = np.random.default_rng([seed, 3]).permutation(n)[: round(share * n)]
        return np.isin(np.arange(n), chosen)

    def offsets(self, since_start_ms: np.ndarray, drifting: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """What the drift adds to each channel (channels, n, t) at event times `since_start_ms` (n, t) after the
        simulation's start and, for a firmware update, where it is installed (n, t)."""
        since_ms = since_start_ms - self.at_s * 1000
        if self.ramp_s > 0:
            level = np.clip(since_ms / (self.ramp_s * 1000), 0, 1)
        else:
            level = (since_ms >= 0).astype(float)
        level *= drifting[:, None]
        if self.kind == "firmware":
            per_channel = [self.size if c in self.channels else 0.0 for c in CHANNELS]
        else:
            per_channel = [self.size, SEASON_RH_PER_DEGREE * self.size, 0.0]
        installed = (level > 0) if self.kind == "firmware" else None
        return np.array(per_channel)[:, None, None] * level[None], installed
