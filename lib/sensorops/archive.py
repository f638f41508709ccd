"""The S3 archive: Parquet files in hourly partitions, written by the stream job and read by training and checks.

    s3://sensor-archive/features/dt=2026-11-27/hour=09/part-....parquet
    s3://sensor-archive/raw/dt=2026-11-27/hour=09/part-....parquet

A *location* names one table of the archive (`FEATURES`, `RAW`, or the same under another root, such as a test's
`s3://sensor-archive/test-1/features`). The partition layout is spelled once, in `PARTITION_FORMATS`: Python formats
it with `partition_path`, and the stream job's SQL with `partition_sql`.

One rule for every read: a range holding no data gives an empty frame (with the columns asked for), a range whose end
is before its start is an error. Only committed files are read: Flink names in-progress files with a leading dot.
`hour`, a partition column that Flink keeps in the path only, is restored from `event_time` (its UTC hour).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sensorops import config, features, storage
from sensorops.errors import UserError

log = logging.getLogger(__name__)

ROOT = f"s3://{config.ARCHIVE_BUCKET}"
FEATURES = f"{ROOT}/features"
RAW = f"{ROOT}/raw"
TIME_COLUMN = "event_time"

PARTITION_FORMATS = (("dt", "%Y-%m-%d", "yyyy-MM-dd"), ("hour", "%H", "HH"))
"""Partition columns, outermost first: name, Python strftime format, Flink SQL DATE_FORMAT pattern."""


@dataclass(frozen=True)
class ArchiveData:
    """Rows read from the archive and where they came from (the dataset lineage)."""

    frame: pd.DataFrame
    partitions: list[str]
    """`s3://bucket/.../dt=.../hour=...` of every partition read, in time order."""
    files: int

    @property
    def source(self) -> str:
        """One string naming the data: the first and last partition."""
        if not self.partitions:
            return ""
        return self.partitions[0] if len(self.partitions) == 1 else f"{self.partitions[0]} .. {self.partitions[-1]}"


def partition_path(hour: datetime) -> str:
    """The partition of one hour, `dt=2026-11-27/hour=09`."""
    return "/".join(f"{name}={hour:{fmt}}" for name, fmt, _ in PARTITION_FORMATS)


def partition_sql(time_column: str = TIME_COLUMN) -> str:
    """The partition columns as Flink SQL expressions of `time_column`, for the job's INSERTs."""
    return ", ".join(f"DATE_FORMAT({time_column}, '{sql}') AS `{name}`" for name, _, sql in PARTITION_FORMATS)


def partition_columns_sql() -> tuple[str, str]:
    """The partition columns for a Flink sink table: their declarations, and the `PARTITIONED BY` list."""
    names = [f"`{name}`" for name, _, _ in PARTITION_FORMATS]
    return ", ".join(f"{n} STRING" for n in names), ", ".join(names)


def parse_hour(value: str | datetime, *, end: bool = False) -> datetime:
    """`2026-11-27`, `2026-11-27T09` or a datetime, as an hour in UTC. A bare date as `end` means its last hour."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(hours=23) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if len(text) > 13 else text + ":00")
    except ValueError:
        raise UserError(f"not a date or hour: {value!r} (expected YYYY-MM-DD or YYYY-MM-DDTHH)") from None
    return parse_hour(moment)


def hours(start: str | datetime, end: str | datetime) -> list[datetime]:
    """Every hour from `start` to `end`, both included; an end before the start is an error."""
    first, last = parse_hour(start), parse_hour(end, end=True)
    if last < first:
        raise UserError(f"the range ends ({last:%Y-%m-%dT%H}) before it starts ({first:%Y-%m-%dT%H})")
    return [first + timedelta(hours=i) for i in range(int((last - first) / timedelta(hours=1)) + 1)]


def _path(location: str) -> tuple[str, str]:
    """(scheme, path) of a location: `s3://bucket/prefix` as pyarrow's S3 filesystem names it (`bucket/prefix`), or a
    local folder for a local `filesystem` in tests."""
    scheme = "s3://" if location.startswith("s3://") else ""
    return scheme, location.removeprefix(scheme).rstrip("/")


def _data_files(infos: Iterable[pafs.FileInfo]) -> list[str]:
    """Finished data files: not directories, not hidden (Flink's in-progress `.part-*`), not empty."""
    return sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_")) and (i.size or 0) > 0
    )


def _files_by_partition(fs: pafs.FileSystem, root: str, wanted: set[str] | None) -> dict[str, list[str]]:
    """Data files under `root` grouped by partition path (`dt=.../hour=...`), only the `wanted` ones if given."""
    days = [] if wanted is None else sorted({w.split("/")[0] for w in wanted})  # `dt=...`: list one folder a day
    folders = [f"{root}/{day}" for day in days] if days else [root]
    found: dict[str, list[str]] = {}
    for folder in folders:
        selector = pafs.FileSelector(folder, allow_not_found=True, recursive=True)
        for path in _data_files(fs.get_file_info(selector)):
            partition = path.removeprefix(f"{root}/").rsplit("/", 1)[0]
            if wanted is None or partition in wanted:
                found.setdefault(partition, []).append(path)
    return dict(sorted(found.items()))


def read(
    location: str = FEATURES,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    *,
    columns: Sequence[str] | None = None,
    filesystem: pafs.FileSystem | None = None,
) -> ArchiveData:
    """The committed rows of `location` in the hours from `start` to `end` (inclusive; all of it without a range).

    Sorted by event time (stable). A table of the feature archive has exactly `features.FEATURE_COLUMNS`.
    """
    scheme, root = _path(location)
    wanted = None if start is None else {partition_path(h) for h in hours(start, end or start)}
    fs = filesystem or storage.pyarrow_filesystem()
    try:
        by_partition = _files_by_partition(fs, root, wanted)
    except OSError as exc:
        raise UserError(f"cannot list {location}: {exc}") from exc
    files = [f for paths in by_partition.values() for f in paths]
    partitions = [f"{scheme}{root}/{p}" for p in by_partition]
    if not files:
        return ArchiveData(pd.DataFrame(columns=list(columns or [])), [], 0)
    dataset = ds.dataset(files, format="parquet", filesystem=fs)  # no partitioning: `hour` is restored below
    present = set(dataset.schema.names)
    frame = dataset.to_table(columns=[c for c in (columns or dataset.schema.names) if c in present]).to_pandas()
    for column in (TIME_COLUMN, "kafka_timestamp"):
        if column in frame:  # INT96 (older files) and INT64 milliseconds read alike
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ms, UTC]")
    if TIME_COLUMN in frame and "hour" not in frame and (columns is None or "hour" in columns):
        frame["hour"] = frame[TIME_COLUMN].dt.hour.astype("int32")
    if columns is None and set(features.FEATURE_COLUMNS) <= set(frame.columns):
        frame = frame[features.FEATURE_COLUMNS]
    if TIME_COLUMN in frame:
        frame = frame.sort_values(TIME_COLUMN, kind="stable")
    log.info("read %d rows from %d files in %d partitions of %s", len(frame), len(files), len(partitions), location)
    return ArchiveData(frame.reset_index(drop=True), partitions, len(files))


def write(
    frame: pd.DataFrame,
    location: str = FEATURES,
    *,
    basename: str = "backfill",
    filesystem: pafs.FileSystem | None = None,
) -> list[str]:
    """Write a table in the archive layout (one Parquet file per hour); return the partitions written.

    For tests, benchmarks and a backfill when the stream job has archived too little. An existing file of the same
    `basename` is replaced, so a rerun does not duplicate rows.
    """
    scheme, root = _path(location)
    fs = filesystem or storage.pyarrow_filesystem()
    times = pd.to_datetime(frame[TIME_COLUMN], utc=True)
    written = []
    for hour, part in frame.groupby(times.dt.floor("h"), sort=True):
        folder = f"{root}/{partition_path(hour.to_pydatetime())}"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        if not isinstance(fs, pafs.S3FileSystem):  # on S3 it would leave empty marker objects
            fs.create_dir(folder, recursive=True)
        pq.write_table(table, f"{folder}/{basename}.parquet", filesystem=fs)
        written.append(f"{scheme}{folder}")
    return written


def delete(location: str) -> int:
    """Delete every object under an archive location (for tests and benchmarks); return how many."""
    scheme, path = _path(location)
    bucket, _, prefix = path.partition("/")
    if scheme != "s3://":
        raise UserError(f"an archive location to delete is s3://bucket/prefix, not {location!r}")
    if not prefix:
        raise UserError("refusing to delete a whole bucket; give a prefix such as s3://bucket/tests/run-1")
    return storage.delete_prefix(bucket, prefix + "/")
