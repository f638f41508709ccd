"""The archive layout without services: partitions, ranges, a round trip on a local filesystem."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest
from pyarrow import fs as pafs

from sensorops import archive, events, features, generator
from sensorops.errors import UserError


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Six hours of ten sensors, one reading every 15 s, through the batch feature computation."""
    readings = generator.simulate(n_sensors=10, duration_s=6 * 3600, interval_s=15, seed=7)
    return features.compute_features(events.to_dicts(readings))


def test_hours_inclusive_and_bare_dates() -> None:
    hours = archive.hours("2026-11-27", "2026-11-28")
    assert len(hours) == 48
    assert archive.partition_path(hours[9]) == "dt=2026-11-27/hour=09"
    assert len(archive.hours("2026-11-27T09", "2026-11-27T11")) == 3


def test_reversed_and_unreadable_ranges_are_named() -> None:
    with pytest.raises(UserError, match="ends .* before it starts"):
        archive.hours("2026-11-28", "2026-11-27")
    with pytest.raises(UserError, match="not a date"):
        archive.hours("yesterday", "2026-11-27")


def test_python_and_flink_spell_the_same_partitions() -> None:
    """`partition_sql` must produce what `partition_path` names: check the patterns against strftime's."""
    moment = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    java_to_python = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}
    for name, python, sql in archive.PARTITION_FORMATS:
        translated = sql
        for java, py in java_to_python.items():
            translated = translated.replace(java, py)
        assert translated == python, name
        assert f"DATE_FORMAT(event_time, '{sql}') AS `{name}`" in archive.partition_sql()
    assert archive.partition_path(moment) == "dt=2026-11-27/hour=09"


def test_round_trip_on_local_filesystem(table: pd.DataFrame, tmp_path) -> None:
    local = pafs.LocalFileSystem()
    written = archive.write(table, str(tmp_path), filesystem=local)
    assert len(written) == 6  # six hourly partitions
    data = archive.read(str(tmp_path), "2026-11-27T01", "2026-11-27T02", filesystem=local)
    assert [p.rsplit("/", 2)[-2:] for p in data.partitions] == [
        ["dt=2026-11-27", "hour=01"],
        ["dt=2026-11-27", "hour=02"],
    ]
    expected = table[(table.event_time >= "2026-11-27T01:00Z") & (table.event_time < "2026-11-27T03:00Z")]
    assert len(data.frame) == len(expected)
    assert data.frame.event_time.is_monotonic_increasing
    assert list(data.frame.columns) == features.FEATURE_COLUMNS
    everything = archive.read(str(tmp_path), filesystem=local)
    assert len(everything.frame) == len(table) and len(everything.partitions) == 6


def test_empty_range_is_an_empty_frame_with_the_columns_asked_for(tmp_path) -> None:
    data = archive.read(
        str(tmp_path),
        "2026-01-01",
        "2026-01-01",
        columns=["sensor_id", "event_time"],
        filesystem=pafs.LocalFileSystem(),
    )
    assert data.frame.empty and list(data.frame.columns) == ["sensor_id", "event_time"]
    assert data.partitions == [] and data.files == 0


def test_hour_kept_only_in_the_path_is_restored(table: pd.DataFrame, tmp_path) -> None:
    """Flink's partitioned sink writes `hour` into the path, not into the file."""
    local = pafs.LocalFileSystem()
    archive.write(table.drop(columns=["hour"]), str(tmp_path), filesystem=local)
    data = archive.read(str(tmp_path), "2026-11-27T03", "2026-11-27T03", filesystem=local)
    assert (data.frame["hour"] == 3).all() and data.frame["hour"].dtype == "int32"


def test_deleting_a_whole_bucket_is_refused() -> None:
    with pytest.raises(UserError, match="refusing to delete a whole bucket"):
        archive.delete("s3://sensor-archive")
