"""Replay with a profile (parsing only: no Kafka): folders, one sensor per file, label encodings, bad rows with their
file and line, and the events on the wire."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sensorops import events, profiles, replay
from sensorops.cli import build_parser
from sensorops.cli import replay as cli_replay
from sensorops.errors import UserError

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"


@pytest.fixture(scope="module")
def skab_profile() -> profiles.Profile:
    return profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile


def test_every_skab_row_replays(skab_profile: profiles.Profile) -> None:
    data = replay.read_profile([SKAB], skab_profile)
    assert data.bad_rows == [] and data.rows == len(data.events) == 4515
    assert sorted(data.events["sensor_id"].unique()) == ["valve1-0", "valve1-1", "valve1-2", "valve1-3"]
    assert data.events["timestamp"].is_monotonic_increasing  # the files merged in time order
    assert data.events["is_anomaly"].sum() == 1544  # the 1.0 labels
    assert list(data.events.columns) == [
        "sensor_id",
        "timestamp",
        *skab_profile.channel_names,
        "is_anomaly",
        "anomaly_type",
        "line",
        "file",
    ]
    dicts = profiles.to_dicts(data.events.head(200), skab_profile)
    assert profiles.validate(dicts, skab_profile) == []
    assert set(dicts[0]) >= set(skab_profile.channel_names)


def rig(tmp_path: Path, encoding: str, labels: list[str]) -> Path:
    folder = tmp_path / "rig"
    folder.mkdir(exist_ok=True)
    for name, offset in (("a.csv", 0), ("b.csv", 1)):
        rows = [f"2026-01-01 00:00:{2 * i + offset:02d};{10 + i};{label}" for i, label in enumerate(labels)]
        (folder / name).write_text("ts;flow;state\n" + "\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize(
    "encoding, labels",
    [("0/1", ["0", "1", "0"]), ("0.0/1.0", ["0.0", "1.0", "0.0"]), ("true/false", ["false", "TRUE", "f"])],
)
def test_folder_replay_with_each_label_encoding(tmp_path: Path, encoding: str, labels: list[str]) -> None:
    folder = rig(tmp_path, encoding, labels)
    profile = profiles.infer([folder], "ts", label_column="state").profile
    assert profile.label_encoding == encoding and profile.delimiter == ";"
    data = replay.read_profile([folder], profile)
    assert data.bad_rows == []
    assert data.events["sensor_id"].tolist() == ["rig-a", "rig-b"] * 3  # interleaved by time
    assert data.events["is_anomaly"].tolist() == [False, False, True, True, False, False]


def test_bad_rows_name_their_file_and_line(tmp_path: Path) -> None:
    folder = rig(tmp_path, "0/1", ["0", "1", "0"])
    profile = profiles.infer([folder], "ts", label_column="state").profile
    with (folder / "b.csv").open("a") as fh:
        fh.write("2026-01-01 00:00:09;x;0\n2026-01-01 00:00:10;10;2\n2026-01-01 00:00:11;10\n")
    data = replay.read_profile([folder], profile)
    assert [(b.file.name, b.line) for b in data.bad_rows] == [("b.csv", 5), ("b.csv", 6), ("b.csv", 7)]
    assert "'x' is not a number" in data.bad_rows[0].reason
    assert "label '2' not understood" in data.bad_rows[1].reason
    assert "fields" in data.bad_rows[2].reason
    assert len(data.events) == 6 and data.rows == 9


def test_sensor_id_column_and_out_of_range_readings(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text(
        "ts,dev,flow\n2026-01-01T00:00:00Z,p1,1.0\n2026-01-01T00:00:01Z,p2,1.5\n2026-01-01T00:00:02Z,p1,9\n"
    )
    profile = profiles.Profile(
        name="pumps",
        channels=(profiles.Channel("flow", "flow", "", (0.0, 5.0)),),
        timestamp_column="ts",
        sensor_id_column="dev",
    )
    data = replay.read_profile([path], profile)
    assert data.events["sensor_id"].tolist() == ["p1", "p2"]
    assert [str(b) for b in data.bad_rows] == ["line 4: flow 9.0 outside 0..5"]


def test_default_profile_replay_gives_todays_events(tmp_path: Path) -> None:
    path = tmp_path / "climate.csv"
    path.write_text(
        "timestamp,sensor_id,temperature,humidity,pressure,anomaly_type\n"
        "2026-03-01T10:00:00Z,s1,21.5,40.0,1000,none\n2026-03-01T10:00:01Z,s1,55.0,40.1,1001,spike\n"
    )
    data = replay.read_profile([path], profiles.default())
    mapping = {name: name for name in ("temperature", "humidity", "pressure", "sensor_id")}
    mapped = replay.read_csv(path, mapping, "timestamp", label_column="anomaly_type")
    assert profiles.serialize(data.events, profiles.default()) == events.serialize(mapped.events)
    assert events.validate(events.to_dicts(data.events)) == []


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["replay", *argv])


def test_cli_reads_folders_with_a_profile_and_one_file_without(tmp_path: Path) -> None:
    folder = rig(tmp_path, "0/1", ["0", "1", "0"])
    profile = profiles.save(profiles.infer([folder], "ts", label_column="state").profile, tmp_path / "rig.yaml")
    data, used = cli_replay.read(args(str(folder), "--profile", str(profile)))
    assert used is not None and used.name == "rig" and len(data.events) == 6
    with pytest.raises(UserError, match="--timestamp-column come"):
        cli_replay.read(args(str(folder), "--profile", str(profile), "--timestamp-column", "ts"))
    with pytest.raises(UserError, match="2 files given"):
        cli_replay.read(args(str(folder / "a.csv"), str(folder / "b.csv"), "--timestamp-column", "ts"))
    with pytest.raises(UserError, match="give --timestamp-column"):
        cli_replay.read(args(str(folder / "a.csv"), "--map", "temperature=flow"))
