"""CSV replay, parsing part: mapping, timestamps, labels, and bad rows reported with their line numbers."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from sensorops import events, replay
from sensorops.errors import UserError

CSV = """time;Temp_C;RH;Device;status
2026-03-01T10:00:00Z;21.5;40.1;dev-a;normal
2026-03-01T10:00:01Z;21.6;;dev-b;0

2026-03-01T10:00:02Z;abc;40.3;dev-a;normal
2026-03-01T10:00:03Z;55.0;40.4;dev-a;spike
2026-03-01T10:00:04Z;21.7;40.5;dev-b
not a time;21.8;40.6;dev-a;1
2026-03-01 10:00:06;21.9;140.0;dev-a;normal
2026-03-01 10:00:07;22.0;40.8;dev-b;yes
2026-03-01 10:00:08;22.1;40.9;dev-a;maybe
"""


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "readings.csv"
    path.write_text(CSV)
    return path


def read(path: Path, **kwargs: object) -> replay.ReplayData:
    mapping = replay.parse_mapping(["temperature=Temp_C", "humidity=RH", "sensor_id=Device"])
    return replay.read_csv(path, mapping, "time", label_column="status", delimiter=";", **kwargs)


def test_bad_rows_are_reported_with_line_numbers(csv_file: Path) -> None:
    data = read(csv_file)
    by_line = {b.line: b.reason for b in data.bad_rows}
    assert sorted(by_line) == [5, 7, 8, 9, 11]
    assert "'abc' is not a number" in by_line[5]
    assert "fields" in by_line[7]
    assert "not a date" in by_line[8]
    assert "outside 0..100" in by_line[9]
    assert "not understood" in by_line[11]
    assert data.events["line"].tolist() == [2, 3, 6, 10]


def test_good_rows_become_schema_valid_events(csv_file: Path) -> None:
    data = read(csv_file)
    ev = data.events
    assert ev["sensor_id"].tolist() == ["dev-a", "dev-b", "dev-a", "dev-b"]
    assert ev["timestamp"].iloc[0] == pd.Timestamp("2026-03-01T10:00:00Z")
    assert ev["timestamp"].iloc[3] == pd.Timestamp("2026-03-01T10:00:07Z")  # naive time taken as UTC
    assert ev["humidity"].isna().tolist() == [False, True, False, False]  # empty cell: a dropout, not an error
    assert ev["pressure"].isna().all()
    assert ev["is_anomaly"].tolist() == [False, False, True, True]
    assert ev["anomaly_type"].tolist() == ["none", "none", "spike", "other"]
    dicts = events.to_dicts(ev)
    assert events.validate(dicts) == []
    assert dicts[1]["humidity"] is None
    assert dicts[0]["location"] == {"building": "replay", "floor": 0, "room": "replay"}


def test_without_label_everything_is_normal_and_sensor_id_defaults(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("ts,t\n1767261600,20.5\n1767261601,20.6\n1767261602,NaN\n1767261603,n/a\n")
    data = replay.read_csv(path, {"temperature": "t"}, "ts", sensor_id="lab-1")
    assert data.bad_rows == []
    assert data.events["sensor_id"].tolist() == ["lab-1"] * 4
    assert data.events["temperature"].isna().tolist() == [False, False, True, True]  # usual null spellings
    assert data.events["timestamp"].iloc[0] == pd.Timestamp(1767261600, unit="s", tz="UTC")
    assert not data.events["is_anomaly"].any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mapping": {"temperature": "nope"}}, "no column"),
        ({"mapping": {"sensor_id": "Device"}}, "map at least one"),
        ({"timestamp_column": "when"}, "no column"),
        ({"delimiter": ";;"}, "one character"),
    ],
)
def test_wrong_arguments_are_user_errors(csv_file: Path, kwargs: dict, message: str) -> None:
    args = {"mapping": {"temperature": "Temp_C"}, "timestamp_column": "time", "delimiter": ";", **kwargs}
    with pytest.raises(UserError, match=message):
        replay.read_csv(csv_file, **args)


def test_mapping_syntax_is_checked() -> None:
    assert replay.parse_mapping(["pressure = P_hPa"]) == {"pressure": "P_hPa"}
    with pytest.raises(UserError, match="FIELD=COLUMN"):
        replay.parse_mapping(["temperature"])
    with pytest.raises(UserError, match="cannot map"):
        replay.parse_mapping(["colour=C"])


def test_speed_factor_paces_the_replay(csv_file: Path) -> None:
    events = read(csv_file).events  # spans 7 s of event time
    t0 = time.monotonic()
    batches = list(replay.paced(events, speed=10))
    took = time.monotonic() - t0
    assert sum(len(b) for b in batches) == len(events)
    assert 0.6 <= took < 10  # 7 s at 10x; the upper bound leaves room for a busy machine
    t0 = time.monotonic()
    assert sum(len(b) for b in replay.paced(events, speed=0)) == len(events)
    assert time.monotonic() - t0 < 0.5


def test_rebase_moves_the_first_event_to_now(csv_file: Path) -> None:
    events = read(csv_file).events
    first = next(replay.paced(events, speed=0, rebase=True))
    assert abs(pd.Timestamp.now(tz="UTC") - first["timestamp"].iloc[0]) < pd.Timedelta(seconds=5)
    gaps = first["timestamp"].diff().dropna()
    assert (gaps == events["timestamp"].diff().dropna().to_numpy()).all()


def test_a_stray_quote_spoils_its_own_line_only(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('ts,t\n2026-03-01T10:00:00Z,"20.5\n2026-03-01T10:00:01Z,20.6\n2026-03-01T10:00:02Z,20.7\n')
    data = replay.read_csv(path, {"temperature": "t"}, "ts")
    assert [b.line for b in data.bad_rows] == [2]
    assert data.events["line"].tolist() == [3, 4]


def test_a_huge_field_does_not_stop_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(f"ts,t\n2026-03-01T10:00:00Z,{'9' * 200_000}\n2026-03-01T10:00:01Z,20.6\n")
    data = replay.read_csv(path, {"temperature": "t"}, "ts")
    assert [b.line for b in data.bad_rows] == [2] and "field larger than field limit" in data.bad_rows[0].reason
    assert data.events["line"].tolist() == [3]


def test_latin1_file_is_a_one_line_error_or_read_with_its_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("ts,t,room\n2026-03-01T10:00:00Z,20.5,Küche\n".encode("latin-1"))
    mapping = {"temperature": "t", "room": "room"}
    with pytest.raises(UserError, match="is not utf-8-sig text .*--encoding latin-1"):
        replay.read_csv(path, mapping, "ts")
    assert replay.read_csv(path, mapping, "ts", encoding="latin-1").events["room"].tolist() == ["Küche"]


def test_event_times_the_job_would_reject_are_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "times.csv"
    path.write_text("ts,t\n1999-12-31T23:59:59Z,20.5\n9999-01-01T00:00:00Z,20.6\n2026-03-01T10:00:00Z,20.7\n")
    data = replay.read_csv(path, {"temperature": "t"}, "ts")
    assert [b.line for b in data.bad_rows] == [2, 3]  # 9999 is past what pandas represents: "not a date"
    assert "outside 2000 .. a day from now" in data.bad_rows[0].reason
    epochs = tmp_path / "epochs.csv"
    epochs.write_text("ts,t\n1767261600,20.5\n99999999999999999999,20.6\n")
    data = replay.read_csv(epochs, {"temperature": "t"}, "ts")
    assert [b.line for b in data.bad_rows] == [3] and data.events["line"].tolist() == [2]
