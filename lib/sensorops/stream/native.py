"""The stream job's native fast path: `io.sensorops.flink.ReadEvent`, a Java scalar UDF built from `java/` with Maven.

It decodes a raw Kafka record as `events.read_events` does, but returns the flat event only when it is certain that
Python would accept the record with exactly those values; for anything else it returns NULL ("undecided"), and the
job hands those records to the Python UDF, which stays the one definition of what is valid and of every dead-letter
reason. The rules' values (channels and their bounds, the limits, the timestamp pattern) reach the UDF as one JSON
literal written here from `events`, so they live in Python only.

In SQL (the jar shipped with the job, `pipeline.jars`)::

    CREATE TEMPORARY FUNCTION read_event AS 'io.sensorops.flink.ReadEvent' LANGUAGE JAVA
    SELECT read_event(payload, record_key, '{"bounds": ...}') AS e FROM sensor_source
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from sensorops import events
from sensorops.config import ROOT
from sensorops.errors import UserError
from sensorops.versions import versions

log = logging.getLogger(__name__)

SOURCES = ROOT / "java"
"""The Maven module: pom.xml and src/."""
BUILD_DIR = ROOT / "build" / "java"
"""Maven's build directory (`mvn/`) and the jar it made, copied out whole once built."""
JAR = BUILD_DIR / "sensorops-udf.jar"
"""The UDF's jar, with Jackson shaded into `io.sensorops.shaded.jackson`."""
CLASS = "io.sensorops.flink.ReadEvent"
FUNCTION = "read_event"
RESULT_FIELDS = ("sensor_id", "event_ms", "readings", "is_anomaly", "anomaly_type", "building", "floor", "room")
RESULT_FIELDS += ("device_model", "firmware_version", "battery_level")
"""The UDF's ROW: `readings` an ARRAY<DOUBLE> in the format's channel order; the context fields NULL for a flat
format."""
CLOCK_MARGIN_MS = 60_000
"""The UDF leaves an event time within this much of `events.MAX_AHEAD_MS` ahead of its clock undecided: Python's
batch reads its own clock, a little earlier or later."""
VERSION_KEYS = ("FLINK_VERSION", "JACKSON_VERSION")


def format_literal(cfg_or_fmt: Any, max_value_bytes: int | None = None, max_key_bytes: int | None = None) -> str:
    """The JSON the UDF takes as its third argument: an `events.EventFormat` (or a `StreamJobConfig`'s, with its
    limits) and the events constants. Limits not given come from the config, else from `events`."""
    fmt: events.EventFormat = getattr(cfg_or_fmt, "event_format", cfg_or_fmt)
    if not isinstance(fmt, events.EventFormat):
        raise TypeError(f"not an EventFormat or a StreamJobConfig: {cfg_or_fmt!r}")
    if max_value_bytes is None:
        max_value_bytes = getattr(cfg_or_fmt, "max_value_bytes", events.MAX_VALUE_BYTES)
    if max_key_bytes is None:
        max_key_bytes = getattr(cfg_or_fmt, "max_key_bytes", events.MAX_KEY_BYTES)
    spec = {
        "bounds": [[name, float(lo), float(hi)] for name, lo, hi in fmt.bounds],
        "context": fmt.context,
        "max_value_bytes": int(max_value_bytes),
        "max_key_bytes": int(max_key_bytes),
        "earliest_ms": events.EARLIEST_MS,
        "max_ahead_ms": events.MAX_AHEAD_MS,
        "margin_ms": CLOCK_MARGIN_MS,
        "timestamp_pattern": events.TIMESTAMP_PATTERN,
    }
    return json.dumps(spec, allow_nan=False)  # ASCII only: repr of each bound, which Java parses to the same double


def sql_literal(text: str) -> str:
    """`text` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def create_function_sql(name: str = FUNCTION) -> str:
    """The DDL that registers the UDF (its jar must be on the job's `pipeline.jars`)."""
    return f"CREATE TEMPORARY FUNCTION {name} AS '{CLASS}' LANGUAGE JAVA"


def call_sql(payload: str, key: str, cfg_or_fmt: Any, name: str = FUNCTION) -> str:
    """An SQL call of the UDF on the given columns (BYTES), for a format (see `format_literal`)."""
    return f"{name}({payload}, {key}, {sql_literal(format_literal(cfg_or_fmt))})"


def accepted_sql(row: str, fmt: events.EventFormat) -> str:
    """The columns of `fmt.fields` (as the Python UDF returns them) read from the UDF's ROW `row`."""
    readings = {channel: f"{row}.readings[{i}]" for i, channel in enumerate(fmt.channels, start=1)}  # SQL counts from 1
    return ", ".join(f"{readings.get(field, f'{row}.`{field}`')} AS `{field}`" for field in fmt.fields)


def jar_url() -> str:
    """The jar as `pipeline.jars` takes it (a file:// URL); build it first (`build_jar`)."""
    return JAR.as_uri()


def _stamp() -> str:
    v = versions()
    return json.dumps({k: v[k] for k in VERSION_KEYS}, sort_keys=True)


def _newest_source() -> float:
    return max(p.stat().st_mtime for p in [SOURCES / "pom.xml", *(SOURCES / "src").rglob("*")] if p.is_file())


def build_jar(force: bool = False) -> Path:
    """The UDF's jar (`JAR`), built with Maven unless it is newer than every source and built for these versions."""
    if not force and _fresh():
        return JAR
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(BUILD_DIR / ".lock", "w") as lock:  # one build at a time: `make up` and the unit tests run together
        fcntl.flock(lock, fcntl.LOCK_EX)
        return JAR if not force and _fresh() else _build()


def _fresh() -> bool:
    marker = BUILD_DIR / ".versions"
    return (
        JAR.exists() and marker.exists() and marker.read_text() == _stamp() and JAR.stat().st_mtime > _newest_source()
    )


def _build() -> Path:
    marker = BUILD_DIR / ".versions"
    mvn = shutil.which("mvn")
    if not mvn:
        raise UserError("Maven is not installed: it builds the stream job's Java UDF (Debian: apt-get install maven).")
    v, target = versions(), BUILD_DIR / "mvn"
    cmd = [mvn, "-q", "-B", "-f", str(SOURCES / "pom.xml"), "package", f"-Dsensorops.build.dir={target}"]
    cmd += [f"-Dflink.version={v['FLINK_VERSION']}", f"-Djackson.version={v['JACKSON_VERSION']}"]
    log.info("building %s with Maven", JAR.name)
    result = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"mvn could not build the Java UDF:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    staging = JAR.with_name(f".{JAR.name}.{os.getpid()}")
    shutil.copyfile(target / JAR.name, staging)
    staging.replace(JAR)  # whole or not at all: a job may be reading the previous jar
    marker.write_text(_stamp())
    return JAR
