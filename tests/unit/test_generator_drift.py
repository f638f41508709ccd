"""Drift injection in the generator: where and when it shifts, seeded, and nothing changes without it."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from sensorops import cli, drifts, events, generator
from sensorops.errors import UserError

RUN = dict(n_sensors=20, duration_s=120, seed=7)
DEFAULT_DIGEST = "3d523941b894e0ec5d1a43c409abc53b8844afbb221ef26e5c7221da77b36e65"
"""sha256 of the serialized `simulate(n_sensors=12, duration_s=600, seed=7)` before drift injection existed."""


def test_default_output_is_byte_for_byte_what_it_was() -> None:
    frame = generator.simulate(n_sensors=12, duration_s=600, seed=7)
    assert hashlib.sha256(b"".join(events.serialize(frame)[1])).hexdigest() == DEFAULT_DIGEST


def test_firmware_shifts_only_the_chosen_share_after_drift_at() -> None:
    base = generator.simulate(**RUN)
    drift = drifts.DriftConfig("firmware", at_s=60, size=4.0, share=0.25)
    drifted = generator.simulate(**RUN, drift=drift)
    delta = (drifted["temperature"] - base["temperature"]).fillna(0)
    after = drifted["timestamp"] >= base["timestamp"].min() + pd.Timedelta(seconds=60)
    assert (delta[~after] == 0).all()
    shifted = delta[after].groupby(drifted.loc[after, "sensor_id"].astype(str)).agg(["min", "max"])
    moved = shifted.index[shifted["max"] > 0]
    assert len(moved) == 5  # 25 % of 20
    assert np.allclose(shifted.loc[moved].to_numpy(), 4.0)
    assert (shifted.drop(moved).to_numpy() == 0).all()
    for channel in ("humidity", "pressure"):  # not asked for
        assert drifted[channel].equals(base[channel])
    updated = drifted["firmware_version"].astype(str).str.endswith(drifts.FIRMWARE_SUFFIX)
    assert set(drifted.loc[updated, "sensor_id"].astype(str)) == set(moved)
    assert not updated[~after].any()


def test_drift_is_seeded() -> None:
    drift = drifts.DriftConfig("firmware", at_s=10, share=0.3)
    a, b = generator.simulate(**RUN, drift=drift), generator.simulate(**RUN, drift=drift)
    assert a.equals(b)
    other = generator.simulate(**{**RUN, "seed": 8}, drift=drift)
    pick = lambda f: set(f.loc[f["firmware_version"].astype(str).str.endswith("-ota"), "sensor_id"].astype(str))  # noqa: E731
    assert pick(a) != pick(other)


def test_season_moves_every_sensor_and_a_ramp_sets_in_gradually() -> None:
    base = generator.simulate(**RUN)
    season = generator.simulate(**RUN, drift=drifts.DriftConfig("season", at_s=0, size=-2.0, ramp_s=120))
    dt = (season["temperature"] - base["temperature"]).to_numpy()
    dh = (season["humidity"] - base["humidity"]).to_numpy()
    assert dt[-20:] == pytest.approx(-2.0 * (1 - 1 / 240), abs=0.03)  # the last tick, nearly the whole shift
    assert dt[:20] == pytest.approx(0.0, abs=0.02)
    assert np.nanmax(dh) <= 0 and np.nanmin(dh[-20:]) < -4.5
    assert season["pressure"].equals(base["pressure"])
    assert (season["firmware_version"] == base["firmware_version"]).all()


def test_a_large_shift_still_gives_valid_events() -> None:
    every = drifts.DriftConfig("firmware", size=50, share=1.0, channels=("temperature", "humidity", "pressure"))
    frame = generator.simulate(n_sensors=10, duration_s=60, drift=every)
    assert events.validate(events.to_dicts(frame)) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "winter"}, "a drift is firmware or season"),
        ({"size": 51}, "|size| <= 50"),
        ({"share": 0}, "share in (0, 1]"),
        ({"at_s": -1}, "time and ramp >= 0 s"),
        ({"channels": ("colour",)}, "not firmware of ('colour',)"),
    ],
)
def test_bad_drift_is_a_user_error(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        drifts.DriftConfig(**kwargs)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--drift-at", "5"], "--drift-at: only with --drift firmware or --drift season"),
        (["generate", "--drift", "season", "--drift-share", "0.5"], "--drift-share and --drift-channels are for"),
        (["generate", "--drift", "firmware", "--drift-size", "99"], "|size| <= 50"),
    ],
)
def test_bad_drift_flags_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
