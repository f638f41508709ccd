"""Features of any profile: every channel, a short and a long window, lags; the default profile's table unchanged;
the Flink SQL rendering of the same definition, run here in SQLite (window functions, the same SQL) against pandas."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sensorops import events, features, generator, profiles, replay
from sensorops.errors import UserError

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"


def rig(**extra: object) -> profiles.Profile:
    channels = (profiles.Channel("flow", "Flow"), profiles.Channel("current", "I"))
    return profiles.Profile(name="rig", channels=channels, label_column="state", extra=dict(extra))


def readings(values: dict[str, list[float]], sensors: list[str] | None = None) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    return pd.DataFrame(
        {
            "sensor_id": sensors or ["a"] * n,
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="2s", tz="UTC"),
            **values,
            "is_anomaly": False,
            "anomaly_type": "none",
        }
    )


def test_default_profile_is_todays_table() -> None:
    fs = features.for_profile()
    assert fs.columns == features.FEATURE_COLUMNS and fs.numeric == features.NUMERIC_FEATURES
    assert fs.flink_sql("events") == features.flink_sql("events")
    sample = events.to_dicts(generator.simulate(n_sensors=3, duration_s=120, interval_s=5, seed=3))
    pd.testing.assert_frame_equal(fs.compute(sample), features.compute_features(sample))


def test_columns_per_channel() -> None:
    fs = features.for_profile(rig())
    assert fs.event_columns == ["sensor_id", "event_time", "flow", "current", "is_anomaly", "anomaly_type"]
    assert fs.channel_features("flow") == [
        *("flow_rolling_mean", "flow_rolling_std", "flow_zscore", "flow_long_mean", "flow_long_std"),
        *("flow_long_zscore", "flow_rate_of_change", "flow_delta_10", "flow_delta_60"),
    ]
    assert fs.columns == fs.event_columns + fs.channel_features("flow") + fs.channel_features("current")
    assert "hour" not in fs.columns
    assert set(fs.levels) == {"flow", "current", "flow_rolling_mean", "current_rolling_mean"} | {
        "flow_long_mean",
        "current_long_mean",
    }


def test_windows_and_lags_by_hand() -> None:
    fs = features.FeatureSet(rig(), window=2, long_window=4, lags=(2,))
    flow = [1.0, 3.0, 5.0, 7.0, 9.0]
    out = fs.compute(readings({"flow": flow, "current": [0.5] * 5}))
    assert out["flow_rolling_mean"].tolist() == [1.0, 2.0, 4.0, 6.0, 8.0]
    assert out["flow_rolling_std"].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert out["flow_long_mean"].tolist() == [1.0, 2.0, 3.0, 4.0, 6.0]
    assert out["flow_long_std"].iloc[-1] == pytest.approx(np.std([3, 5, 7, 9]))
    assert out["flow_zscore"].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert out["flow_delta_2"].iloc[:2].isna().all() and out["flow_delta_2"].iloc[2:].tolist() == [4.0, 4.0, 4.0]
    assert out["flow_rate_of_change"].iloc[1:].tolist() == [1.0, 1.0, 1.0, 1.0]  # 2 units every 2 s
    assert (out["current_rolling_std"] == 0).all() and (out["current_zscore"] == 0).all()  # stuck: exactly 0


def test_small_units_keep_their_variance() -> None:
    """A vibration RMS of 0.027 g varies by 1e-7 squared units: below the default table's absolute tolerance."""
    vibration = 0.027 + 0.0006 * np.sin(np.arange(50))
    out = features.for_profile(rig()).compute(readings({"flow": list(vibration), "current": [1.0] * 50}))
    assert (out["flow_rolling_std"].iloc[5:] > 1e-4).all()


def test_sensors_do_not_mix() -> None:
    out = features.FeatureSet(rig(), window=2, long_window=2, lags=(1,)).compute(
        readings({"flow": [1.0, 100.0, 3.0, 200.0], "current": [0.0] * 4}, sensors=["a", "b", "a", "b"])
    )
    assert out["flow_rolling_mean"].tolist() == [1.0, 100.0, 2.0, 150.0]
    assert out["flow_delta_1"].isna().tolist() == [True, True, False, False]


def test_options_come_from_the_profile_file(tmp_path: Path) -> None:
    path = profiles.save(rig(features={"window": 5, "long_window": 30, "lags": [3]}), tmp_path / "rig.yaml")
    fs = features.for_profile(profiles.load(path))
    assert (fs.window, fs.long_window, fs.lags) == (5, 30, (3,))
    assert "flow_delta_3" in fs.columns and "flow_delta_10" not in fs.columns
    assert fs.detrend == () and fs.drifting == []


def test_detrended_channels_keep_their_features() -> None:
    fs = features.for_profile(rig(features={"detrend": ["flow"]}))
    assert fs.drifting == ["flow", "flow_rolling_mean", "flow_long_mean"]
    assert fs.columns == features.for_profile(rig()).columns  # computed all the same (and in the stream)


@pytest.mark.parametrize(
    "options, says",
    [
        ({"window": 50, "long_window": 10}, "window <= long_window"),
        ({"lags": [0]}, "lags >= 1"),
        ({"window": "ten"}, "whole numbers"),
        ({"windows": 3}, "takes window, long_window, lags and detrend"),
        ({"detrend": ["speed"]}, "detrend names no channel of it: \\['speed'\\]"),
        ({"detrend": "flow"}, "detrend is a list of channel names"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, says: str) -> None:
    with pytest.raises(UserError, match=says):
        features.for_profile(rig(features=options))


def test_a_channel_named_like_a_feature_is_refused() -> None:
    channels = (profiles.Channel("flow"), profiles.Channel("flow_zscore"))
    with pytest.raises(UserError, match="repeats a feature name"):
        features.for_profile(profiles.Profile(name="clash", channels=channels))


@pytest.fixture(scope="module")
def skab() -> tuple[features.FeatureSet, pd.DataFrame]:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    return features.for_profile(profile), replay.read_profile([SKAB], profile).events


def test_sql_names_every_column_the_pandas_side_computes(skab: tuple[features.FeatureSet, pd.DataFrame]) -> None:
    fs, _ = skab
    sql = fs.flink_sql("events")
    assert "`current`" in sql  # CURRENT is a reserved word: every channel is quoted
    outer = sql.split("\nFROM (", 1)[0]  # the outermost SELECT list
    produced = re.findall(r"(?:^\s*|AS |,\s+)`(\w+)`(?=,|\n|$)", outer, flags=re.MULTILINE)
    assert produced == fs.columns


def test_sql_and_pandas_agree(skab: tuple[features.FeatureSet, pd.DataFrame]) -> None:
    """The Flink SQL, run by SQLite's window functions over the same events in the same arrival order."""
    fs, readings_ = skab
    view = readings_.rename(columns={"timestamp": "event_time"})[fs.event_columns]
    view = view.assign(
        event_ms=view["event_time"].astype("int64") // 1_000_000,
        proc_time=np.arange(len(view)),
        event_time=view["event_time"].astype(str),
    )
    with sqlite3.connect(":memory:") as db:
        view.to_sql("events", db, index=False)
        got = pd.read_sql(fs.flink_sql("events"), db)
    assert list(got.columns) == fs.columns
    expected = fs.compute(readings_)
    key = ["sensor_id", "event_time"]
    got = got.assign(event_time=pd.to_datetime(got["event_time"], utc=True)).sort_values(key, ignore_index=True)
    expected = expected.assign(event_time=expected["event_time"].astype("datetime64[ns, UTC]"))
    expected = expected.sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(
        got[fs.numeric].astype(float), expected[fs.numeric].astype(float), check_exact=False, rtol=1e-5, atol=1e-6
    )
    assert (got[key] == expected[key]).all().all()


def test_default_profile_from_replayed_files(tmp_path: Path) -> None:
    """CSV files replayed through the default profile give the default table, with the same window statistics as the
    generator's events."""
    readings_ = generator.simulate(n_sensors=3, duration_s=600, interval_s=10, seed=4)
    columns = ["sensor_id", "timestamp", *events.CHANNELS, "anomaly_type"]
    stamps = readings_["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    readings_[columns].assign(timestamp=stamps).to_csv(tmp_path / "climate.csv", index=False)
    replayed = replay.read_profile([tmp_path / "climate.csv"], profiles.default()).events
    table = features.for_profile().compute(replayed)
    expected = features.compute_features(events.to_dicts(readings_))
    assert list(table.columns) == features.FEATURE_COLUMNS
    for column in ("event_time", "temp_rolling_mean", "humidity_zscore", "pressure_rate_of_change", "is_anomaly"):
        pd.testing.assert_series_equal(table[column], expected[column], check_exact=False)


def test_profile_features_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from sensorops.cli import profile as profile_cli

    path = profiles.save(rig(features={"detrend": ["flow"]}), tmp_path / "rig.yaml")
    fs = features.for_profile(profiles.load(path))
    assert profile_cli.run_features(argparse.Namespace(profile=str(path), sql=False)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == fs.columns
    assert "flow  (drifting level: not a model input)" in lines and lines[-1].startswith(f"{len(fs.columns)} columns")
    assert profile_cli.run_features(argparse.Namespace(profile=str(path), sql=True)) == 0
    assert capsys.readouterr().out.strip() == fs.flink_sql("events").strip()
