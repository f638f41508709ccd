"""`profile infer` on the shipped SKAB slice and on small hand-made files: channels, ranges, label encoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorops import profiles
from sensorops.cli import main
from sensorops.errors import UserError

SKAB = Path(__file__).resolve().parents[2] / "data" / "skab"


@pytest.fixture(scope="module")
def skab() -> profiles.Inference:
    return profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab")


def test_skab_gives_eight_channels_and_float_labels(skab: profiles.Inference) -> None:
    profile = skab.profile
    assert len(profile.channels) == 8
    assert profile.channel_names[:3] == ("accelerometer1_rms", "accelerometer2_rms", "current")
    assert profile.channels[-1].column == "Volume Flow RateRMS"
    assert profile.channels[-1].name == "volume_flow_rate_rms"
    assert profile.label_encoding == "0.0/1.0"
    assert profile.delimiter == ";"  # sniffed
    assert profile.timestamp_format == "%Y-%m-%d %H:%M:%S"
    assert profile.sensor_id_column is None  # one sensor per file
    assert skab.files == 4 and skab.rows == 4515
    assert any("skipped 'changepoint'" in n for n in skab.notes)


def test_ranges_hold_the_data_with_a_margin(skab: profiles.Inference) -> None:
    temperature = next(c for c in skab.profile.channels if c.name == "temperature")
    lo, hi = temperature.range
    assert lo < 69.1657 - 5 and hi > 79.8891 + 5  # observed 69.17 .. 79.89, span 10.7, margin half of it


def test_small_file_with_names_and_units(tmp_path: Path) -> None:
    path = tmp_path / "rig.csv"
    path.write_text(
        "time,Flow (l/min),Vib,pump,state\n"
        "2026-01-01T00:00:00Z,12.0,0.1,a,normal\n"
        "2026-01-01T00:00:01Z,12.5,0.3,b,cavitation\n"
        "2026-01-01T00:00:02Z,13.0,0.2,a,normal\n"
    )
    result = profiles.infer([path], "time", label_column="state", sensor_id_column="pump")
    profile = result.profile
    assert profile.name == "rig" and profile.delimiter == ","
    assert [(c.name, c.unit) for c in profile.channels] == [("flow", "l/min"), ("vib", "")]
    assert (profile.label_encoding, profile.anomaly_types) == ("names", ("cavitation",))
    assert profile.timestamp_format is None  # ISO-8601 with a zone: read as such


def test_no_timestamp_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("t,x\n1,2\n")
    with pytest.raises(UserError, match=r"no column\(s\) \['when'\]"):
        profiles.infer([path], "when")


def test_cli_writes_the_profile_and_prints_its_decisions(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "skab.yaml"
    argv = ["profile", "infer", str(SKAB), "--timestamp-column", "datetime", "--label-column", "anomaly"]
    assert main([*argv, "--name", "skab", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "encoding 0.0/1.0" in printed and "wrote profile 'skab' (8 channels)" in printed
    assert len(profiles.load(out).channels) == 8
    assert main([*argv, "-o", str(out)]) == 2  # exists: not overwritten without --force
