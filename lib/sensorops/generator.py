"""Synthetic IoT sensor readings: seeded, vectorised, labelled.

A fleet of sensors (building, floor, room, device model, firmware, a draining battery) reports temperature,
humidity and pressure. The normal signal is the sum of:

- a per-sensor baseline (each room is a little warmer or colder, each floor a little lower in pressure);
- a daily cycle (warmest mid-afternoon) and a weekly pattern (occupied office hours on weekdays, heating set back
  at weekends);
- slow wander (a few long sine waves per sensor) and white noise;
- correlation between channels: relative humidity moves against temperature; pressure follows a shared weather front.

Anomalies are injected as *episodes* (an alternating renewal process: a normal gap, then an episode, then a gap, ...)
so that the fraction of anomalous readings matches the requested rate, split across types by `anomaly_mix`:

- ``spike``: one reading several degrees away (and often humidity with it);
- ``drift``: the temperature element drifts away, by a step of 2 degC that grows linearly to 8..12 degC;
- ``stuck``: all three channels repeat the same value exactly;
- ``erratic``: a burst of noise ten times the normal level;
- ``dropout``: one or more channels are missing (null).

Drift (`drifts.DriftConfig`: a firmware update, a change of season) is off by default.

Everything is numpy over a (sensors x ticks) grid; `events.serialize` turns a batch into Kafka keys and JSON
values without building a dict per event.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from sensorops.drifts import FIRMWARE_SUFFIX, DriftConfig
from sensorops.errors import UserError
from sensorops.events import CHANNELS

log = logging.getLogger(__name__)

ANOMALY_TYPES = ("none", "spike", "drift", "stuck", "erratic", "dropout")
"""Codes used in the grid: the index of the name. Replayed data may also carry ``other``."""

DEFAULT_MIX: Mapping[str, float] = {"spike": 0.25, "drift": 0.2, "stuck": 0.2, "erratic": 0.2, "dropout": 0.15}
"""Share of anomalous *readings* per type (not of episodes: a drift lasts far longer than a spike)."""

# Episode lengths in ticks, inclusive bounds (uniform).
EPISODE_TICKS: Mapping[str, tuple[int, int]] = {
    "spike": (1, 1),
    "drift": (20, 60),
    "stuck": (10, 40),
    "erratic": (5, 20),
    "dropout": (1, 6),
}

NOISE = np.array([0.15, 0.6, 0.2])  # sd of white noise per channel: degC, %RH, hPa
DECIMALS = 2
MAX_SENSORS = 1_000_000
"""More sensors than this would not fit one tick in memory on a laptop."""
MODELS = {"TH-200": ("1.4.2", "1.5.0"), "TH-300": ("2.0.1", "2.1.3"), "ENV-500": ("3.2.0",)}


@dataclass(frozen=True)
class GeneratorConfig:
    """What to simulate. `interval_s` is the time between two readings of one sensor."""

    n_sensors: int = 25
    interval_s: float = 0.5
    anomaly_rate: float = 0.08
    seed: int = 42
    anomaly_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    drift: DriftConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n_sensors, (int, np.integer)) or self.n_sensors < 1:
            raise UserError(f"the number of sensors must be at least 1, got {self.n_sensors}")
        if self.n_sensors > MAX_SENSORS:
            raise UserError(f"the number of sensors must be at most {MAX_SENSORS:,}, got {self.n_sensors:,}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise UserError(f"the seed must be a non-negative integer, got {self.seed}")
        if not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise UserError(f"the interval must be a positive number of seconds, got {self.interval_s}")
        if self.interval_s < 0.001:
            raise UserError(f"the interval must be at least 0.001 s (timestamps are in ms), got {self.interval_s}")
        if not 0 <= self.anomaly_rate <= 0.5:
            raise UserError(f"the anomaly rate must be between 0 and 0.5, got {self.anomaly_rate}")
        unknown = set(self.anomaly_mix) - set(ANOMALY_TYPES[1:])
        if unknown:
            raise UserError(f"unknown anomaly types {sorted(unknown)}; known: {', '.join(ANOMALY_TYPES[1:])}")
        if any(w < 0 for w in self.anomaly_mix.values()) or sum(self.anomaly_mix.values()) <= 0:
            raise UserError("anomaly_mix weights must be non-negative and not all zero")


def make_fleet(n_sensors: int, seed: int = 42) -> pd.DataFrame:
    """Sensor metadata and per-sensor signal parameters, one row per sensor (deterministic in `seed`)."""
    rng = np.random.default_rng([seed, 1])
    n = n_sensors
    width = max(3, len(str(n)))
    floors = rng.integers(1, 6, n)
    models = rng.choice(list(MODELS), n, p=[0.5, 0.3, 0.2])
    firmware = [MODELS[m][rng.integers(len(MODELS[m]))] for m in models]
    fleet = pd.DataFrame(
        {
            "sensor_id": [f"sensor-{i:0{width}d}" for i in range(1, n + 1)],
            "building": rng.choice(["B1", "B2", "B3"], n),
            "floor": floors,
            "room": [f"R{f}{r:02d}" for f, r in zip(floors, rng.integers(1, 30, n))],
            "model": models,
            "firmware_version": firmware,
            "battery_start": rng.uniform(40, 100, n),
            "battery_drain_per_day": rng.uniform(0.5, 3.0, n),
            "temp_base": rng.normal(21.5, 1.2, n),
            "temp_daily_amp": rng.uniform(1.5, 3.0, n),
            "temp_occupancy": rng.uniform(0.8, 1.6, n),
            "hum_base": rng.normal(45, 5, n),
            "hum_per_degree": rng.uniform(1.2, 2.4, n),
            "press_offset": -0.42 * floors + rng.normal(0, 0.3, n),
        }
    )
    # Slow wander: two long sine waves per sensor and channel (periods of hours).
    for c, amp in zip(CHANNELS, (0.35, 1.5, 0.15)):
        for k in range(2):
            fleet[f"{c}_wander_amp{k}"] = rng.uniform(0.3, 1.0, n) * amp
            fleet[f"{c}_wander_period{k}"] = rng.uniform(2, 9, n) * 3600
            fleet[f"{c}_wander_phase{k}"] = rng.uniform(0, 2 * np.pi, n)
    return fleet


@dataclass
class _Carry:
    """Per-sensor state of the segment (normal gap or anomaly episode) that straddles a chunk boundary."""

    kind: np.ndarray  # anomaly code, 0 = normal gap
    remaining: np.ndarray  # ticks left in the segment
    length: np.ndarray  # total ticks of the segment
    pos: np.ndarray  # ticks already elapsed
    params: np.ndarray  # (n, 4): sign, magnitude, extra, channel mask
    stuck: np.ndarray  # (n, 3): values held by a stuck episode


def _start_of(start: datetime | str | None) -> np.datetime64:
    if start is None:
        return np.datetime64(int(time.time() * 1000), "ms")
    ts = pd.Timestamp(start)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.to_datetime64(), "ms")


class SensorSimulator:
    """Stateful generator: successive :meth:`next_ticks` calls continue the same timeline seamlessly."""

    def __init__(self, config: GeneratorConfig | None = None, start: datetime | str | None = None) -> None:
        self.config = config or GeneratorConfig()
        self.fleet = make_fleet(self.config.n_sensors, self.config.seed)
        self.start = _start_of(start)
        self.tick = 0
        self._rng = np.random.default_rng([self.config.seed, 2])
        n = self.config.n_sensors
        self._step_ms = max(1, round(self.config.interval_s * 1000))
        # Sensors report at staggered offsets within an interval, not all at the same millisecond.
        self._phase_ms = (np.arange(n) * self._step_ms) // n
        self._setup_anomalies()
        self._drifting = self.config.drift.sensors(n, self.config.seed) if self.config.drift else None
        first_gap = self._rng.geometric(1 / self._gap_mean, n) if self._gap_mean > 0 else np.zeros(n, int)
        self._carry = _Carry(
            kind=np.zeros(n, np.int8),
            remaining=first_gap,
            length=first_gap,
            pos=np.zeros(n, np.int64),
            params=np.zeros((n, 4)),
            stuck=np.full((n, 3), np.nan),
        )

    def _setup_anomalies(self) -> None:
        mix = {k: float(self.config.anomaly_mix.get(k, 0.0)) for k in ANOMALY_TYPES[1:]}
        total = sum(mix.values())
        weights = np.array([mix[k] / total for k in ANOMALY_TYPES[1:]])
        means = np.array([sum(EPISODE_TICKS[k]) / 2 for k in ANOMALY_TYPES[1:]])
        # Time share of a type is p_k * m_k / sum(p * m); choose episode probabilities p_k ~ w_k / m_k.
        p = weights / means
        self._episode_p = p / p.sum()
        mean_episode = float((self._episode_p * means).sum())
        r = self.config.anomaly_rate
        # Mean gap g so that m / (m + g) = r; gaps are geometric (at least one normal reading between episodes).
        self._gap_mean = mean_episode * (1 - r) / r if r > 0 else 0.0
        self._lo = np.array([0] + [EPISODE_TICKS[k][0] for k in ANOMALY_TYPES[1:]])
        self._hi = np.array([0] + [EPISODE_TICKS[k][1] for k in ANOMALY_TYPES[1:]])

    # -- anomaly schedule -------------------------------------------------------------------------------------

    def _draw_segments(self, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """m (gap, episode) pairs per sensor: kinds, lengths and episode parameters, shape (n, 2m[, 4])."""
        n, rng = self.config.n_sensors, self._rng
        gaps = rng.geometric(1 / self._gap_mean, (n, m))
        kinds_ep = rng.choice(np.arange(1, len(ANOMALY_TYPES)), (n, m), p=self._episode_p).astype(np.int8)
        lens_ep = rng.integers(self._lo[kinds_ep], self._hi[kinds_ep] + 1)
        params = np.stack(
            [
                rng.choice([-1.0, 1.0], (n, m)),  # sign
                rng.uniform(0, 1, (n, m)),  # magnitude quantile
                rng.uniform(0, 1, (n, m)),  # extra: humidity joins a spike / slope
                rng.integers(1, 8, (n, m)).astype(float),  # dropout channel mask (bits T, H, P)
            ],
            axis=-1,
        )
        kinds = np.zeros((n, 2 * m), np.int8)
        kinds[:, 1::2] = kinds_ep
        lens = np.empty((n, 2 * m), np.int64)
        lens[:, 0::2], lens[:, 1::2] = gaps, lens_ep
        full = np.zeros((n, 2 * m, 4))
        full[:, 1::2] = params
        return kinds, lens, full

    def _schedule(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Anomaly code, position in episode, episode length and episode params for each (sensor, tick)."""
        n, c = self.config.n_sensors, self._carry
        if self._gap_mean == 0:
            z = np.zeros((n, t), np.int64)
            return z.astype(np.int8), z, z + 1, np.zeros((n, t, 4))
        # Enough fresh segments to cover t ticks for every sensor; draw more in the rare case it is not.
        mean_pair = self._gap_mean + float((self._episode_p * (self._lo[1:] + self._hi[1:]) / 2).sum())
        m = max(2, int(t / mean_pair * 1.5) + 4)
        while True:
            kinds, lens, params = self._draw_segments(m)
            # A carried gap is followed by an episode: drop the first fresh gap for those sensors.
            lens[:, 0] = np.where(c.kind == 0, 0, lens[:, 0])
            kinds = np.concatenate([c.kind[:, None], kinds], axis=1)
            lens = np.concatenate([c.remaining[:, None], lens], axis=1)
            params = np.concatenate([c.params[:, None], params], axis=1)
            if (lens.sum(axis=1) > t).all():
                break
            m *= 2
        ends = np.cumsum(lens, axis=1)
        clipped = np.diff(np.minimum(ends, t), axis=1, prepend=0)
        seg = np.repeat(np.arange(lens.size), clipped.ravel()).reshape(n, t)
        rows = np.arange(n)[:, None]
        segcol = seg - rows * lens.shape[1]
        starts = ends - lens
        ticks = np.arange(t)[None, :]
        pos = ticks - starts[rows, segcol]
        pos = np.where(segcol == 0, pos + c.pos[:, None], pos)  # the carried segment started earlier
        length = np.where(segcol == 0, c.length[:, None], lens[rows, segcol])
        kind = kinds[rows, segcol]
        par = params[rows, segcol]
        # The segment in progress at the end of the chunk carries over.
        last = segcol[:, -1]
        idx = np.arange(n)
        c.kind = kinds[idx, last].copy()
        c.length = length[:, -1].copy()
        c.pos = pos[:, -1] + 1
        c.remaining = c.length - c.pos
        c.params = params[idx, last].copy()
        return kind, pos, length, par

    # -- signal -----------------------------------------------------------------------------------------------

    def _normal(self, t_ms: np.ndarray) -> np.ndarray:
        """Normal readings, shape (3, n, t), before noise."""
        f = self.fleet
        t_s = t_ms / 1000.0
        hour = (t_s % 86400) / 3600
        weekday = ((t_s // 86400).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0

        def col(name: str) -> np.ndarray:
            return f[name].to_numpy()[:, None]

        def sig(x: np.ndarray) -> np.ndarray:
            return 1 / (1 + np.exp(-x))

        daily = col("temp_daily_amp") * np.cos(2 * np.pi * (hour - 15) / 24)
        open_hours = sig((hour - 8) / 0.5) - sig((hour - 18) / 0.5)
        occupancy = np.where(weekday < 5, col("temp_occupancy") * open_hours, -1.0)
        wander = []
        for c in CHANNELS:
            w = sum(
                col(f"{c}_wander_amp{k}")
                * np.sin(2 * np.pi * t_s / col(f"{c}_wander_period{k}") + col(f"{c}_wander_phase{k}"))
                for k in range(2)
            )
            wander.append(w)
        temp_dev = daily + occupancy + wander[0]
        temperature = col("temp_base") + temp_dev
        humidity = col("hum_base") - col("hum_per_degree") * temp_dev + wander[1]
        weather = 6 * np.sin(2 * np.pi * t_s / (3.3 * 86400)) + 2 * np.sin(2 * np.pi * t_s / (19 * 3600) + 1)
        pressure = 1013.25 + col("press_offset") + weather + wander[2]
        return np.stack([temperature, np.broadcast_to(humidity, temperature.shape), pressure])

    def next_ticks(self, n_ticks: int) -> pd.DataFrame:
        """The next `n_ticks` readings of every sensor, in time order (tick by tick, sensors within a tick)."""
        n, t = self.config.n_sensors, int(n_ticks)
        ticks = self.tick + np.arange(t)
        t_ms = self.start.astype(np.int64) + ticks[None, :] * self._step_ms + self._phase_ms[:, None]  # (n, t)
        values = self._normal(t_ms.astype(np.float64))
        shift = None
        if self.config.drift:
            shift = self.config.drift.offsets(t_ms - self.start.astype(np.int64), self._drifting)
            values += shift[0]
        noise_scale = np.broadcast_to(NOISE[:, None, None], values.shape).copy()
        kind, pos, length, par = self._schedule(t)
        sign, mag, extra, mask = (par[..., i] for i in range(4))

        code = {name: i for i, name in enumerate(ANOMALY_TYPES)}
        erratic = kind == code["erratic"]
        noise_scale[:, erratic] *= 10
        values += self._rng.standard_normal(values.shape) * noise_scale
        values[1] = np.clip(values[1], 2.0, 99.0)

        spike = kind == code["spike"]
        values[0] += np.where(spike, sign * (5 + 5 * mag), 0)
        values[1] += np.where(spike & (extra < 0.5), -sign * (12 + 10 * mag), 0)
        drift = kind == code["drift"]
        end_offset = 8 + 4 * mag  # from a step of 2 degC to 8..12 degC: faster than any normal change
        values[0] += np.where(drift, sign * (2 + (end_offset - 2) * pos / np.maximum(length - 1, 1)), 0)
        values[1] = np.clip(values[1], 0.0, 100.0)

        stuck = kind == code["stuck"]
        if stuck.any():
            si, st = np.nonzero(stuck)
            origin = st - pos[si, st]
            held = np.empty((3, si.size))
            inside = origin >= 0
            held[:, inside] = values[:, si[inside], origin[inside]]
            held[:, ~inside] = self._carry.stuck[si[~inside]].T
            values[:, si, st] = held
            # A stuck episode still running at the end of the chunk keeps its values for the next one.
            running = stuck[:, -1]
            self._carry.stuck[running] = values[:, running, -1].T

        dropout = kind == code["dropout"]
        bits = mask.astype(np.int64)
        for ch in range(3):
            values[ch][dropout & ((bits >> ch) & 1).astype(bool)] = np.nan

        self.tick += t
        days = (ticks * self._step_ms / 86_400_000.0)[None, :]
        f = self.fleet
        battery = f["battery_start"].to_numpy()[:, None] - 5 - f["battery_drain_per_day"].to_numpy()[:, None] * days
        battery = 5 + np.mod(battery, 95)  # replaced when it reaches 5 %

        def order(a: np.ndarray) -> np.ndarray:  # flatten tick-major: all sensors of tick 0, then tick 1, ...
            return np.ascontiguousarray(a.T).ravel()

        sensor_idx = np.tile(np.arange(n), t)
        codes = order(kind)
        frame = pd.DataFrame(
            {
                "sensor_id": pd.Categorical.from_codes(sensor_idx, f["sensor_id"]),
                "timestamp": pd.to_datetime(order(t_ms), unit="ms", utc=True),
                "temperature": np.round(order(values[0]), DECIMALS),
                "humidity": np.round(order(values[1]), DECIMALS),
                "pressure": np.round(order(values[2]), DECIMALS),
                "is_anomaly": codes > 0,
                "anomaly_type": pd.Categorical.from_codes(codes, ANOMALY_TYPES),
            }
        )
        for name in ("building", "floor", "room", "model", "firmware_version"):
            col = f[name].to_numpy()[sensor_idx]
            if name == "firmware_version" and shift is not None and shift[1] is not None:  # updated sensors
                col = np.where(order(shift[1]), col + FIRMWARE_SUFFIX, col)
            frame[name] = col if name == "floor" else pd.Categorical(col)
        frame["battery_level"] = np.round(order(np.broadcast_to(battery, (n, t))), 1)
        return frame

    def chunks(self, total_ticks: int, chunk_ticks: int = 2000) -> Iterator[pd.DataFrame]:
        """`total_ticks` ticks as successive DataFrames of at most `chunk_ticks` ticks each."""
        done = 0
        while done < total_ticks:
            step = min(chunk_ticks, total_ticks - done)
            yield self.next_ticks(step)
            done += step

    def live(self, duration_s: float, ticks_per_batch: int = 1) -> Iterator[pd.DataFrame]:
        """Each batch of readings when its timestamps come due in wall-clock time (start "now"), for `duration_s`."""
        total = max(1, round(duration_s / self.config.interval_s))
        origin_ms = int(self.start.astype(np.int64)) + int(self._phase_ms.max())
        for frame in self.chunks(total, ticks_per_batch):
            due = (origin_ms + (self.tick - 1) * self._step_ms) / 1000.0  # the last reading of this batch
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            yield frame


def ticks_for(duration_s: float | None = None, days: float | None = None, interval_s: float = 0.5) -> int:
    """Number of ticks (readings per sensor) that cover a duration given in seconds or days."""
    seconds = (duration_s or 0.0) + (days or 0.0) * 86400
    if not (seconds > 0 and math.isfinite(seconds)):
        raise UserError(f"the duration must be a positive number of seconds (or days), got {seconds:g} s")
    return max(1, round(seconds / interval_s))


def simulate(
    n_sensors: int = 25,
    duration_s: float | None = 60,
    interval_s: float = 0.5,
    anomaly_rate: float = 0.08,
    seed: int = 42,
    start: datetime | str | None = "2026-11-27T00:00:00Z",
    days: float | None = None,
    anomaly_mix: Mapping[str, float] | None = None,
    drift: DriftConfig | None = None,
) -> pd.DataFrame:
    """A complete batch of readings (backfill: event time runs as fast as the computer can go).

    `duration_s` or `days` gives the span of event time; with `days`, `duration_s` is ignored. `start` defaults to
    a fixed date (a Friday) so that the same arguments always give the same events; pass None for "now".
    """
    mix = dict(anomaly_mix or DEFAULT_MIX)
    cfg = GeneratorConfig(
        n_sensors=n_sensors, interval_s=interval_s, anomaly_rate=anomaly_rate, seed=seed, anomaly_mix=mix, drift=drift
    )
    total = ticks_for(None if days else duration_s, days, interval_s)
    sim = SensorSimulator(cfg, start=start)
    frames = list(sim.chunks(total))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def anomaly_summary(events: pd.DataFrame) -> pd.DataFrame:
    """Count and share of readings per anomaly type."""
    counts = events["anomaly_type"].astype(str).value_counts()
    out = pd.DataFrame({"events": counts, "share": counts / max(len(events), 1)})
    out.index.name = "anomaly_type"
    return out
