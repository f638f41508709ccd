"""The Java UDF `io.sensorops.flink.ReadEvent` against `events.read_events`, differentially, in a local PyFlink batch
environment (no cluster, no fixed port): wherever Java returns a row, Python accepts the record with the identical
tuple (floats bit for bit), and Java accepts every event the generator writes."""

from __future__ import annotations

import importlib.util
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sensorops import events, generator, profiles, replay
from sensorops.stream import native

TESTS = Path(__file__).resolve().parents[1]
SKAB = TESTS.parent / "data" / "skab"
TS = "2026-11-27T00:00:01.000Z"
Record = tuple[bytes | None, bytes | None]  # (value, key)


def _module(path: Path) -> Any:
    """An integration test module, for its corpora of dead letters (importing it runs no test and needs no service)."""
    spec = importlib.util.spec_from_file_location(f"_corpus_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table_env() -> Any:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    jar = native.build_jar()
    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    conf = env.get_config()
    conf.set("pipeline.jars", jar.as_uri())
    conf.set("rest.bind-port", "0")  # the mini cluster's REST endpoint on any free port
    conf.set("parallelism.default", "1")
    env.execute_sql(native.create_function_sql())
    return env


def _java(env: Any, records: list[Record], fmt: events.EventFormat) -> list[tuple[Any, ...] | None]:
    """What ReadEvent returns for each record, as a tuple of `fmt.fields` (None: undecided)."""
    from pyflink.table import DataTypes

    n = len(fmt.channels)
    rows = [(i, *(None if b is None else bytearray(b) for b in rec)) for i, rec in enumerate(records)]
    schema = DataTypes.ROW(
        [DataTypes.FIELD("id", DataTypes.INT()), DataTypes.FIELD("v", DataTypes.BYTES())]
        + [DataTypes.FIELD("k", DataTypes.BYTES())]
    )
    env.create_temporary_view("corpus", env.from_elements(rows, schema))
    fields = ["e.`sensor_id`", "e.`event_ms`", *(f"e.`readings`[{j + 1}]" for j in range(n))]
    fields += ["CARDINALITY(e.`readings`)"]
    fields += [f"e.`{f}`" for f in native.RESULT_FIELDS[3:]]
    call = native.call_sql("v", "k", fmt)
    query = f"SELECT id, {', '.join(fields)} FROM (SELECT id, {call} AS e FROM corpus)"
    try:
        frame = env.sql_query(query).to_pandas()  # Arrow: a row at a time through collect() takes ms each
    finally:
        env.drop_temporary_view("corpus")
    kinds = [str, int, *[float] * n, int, bool, str, str, int, str, str, str, float]
    got = {
        row[0]: tuple(None if pd.isna(x) else kind(x) for kind, x in zip(kinds, row[1:], strict=True))
        for row in frame.itertuples(index=False)
    }  # pandas has NaN for a null number (never a value: Java returns no NaN) and no NULL in an int column
    out: list[tuple[Any, ...] | None] = []
    for i in range(len(records)):
        row = got[i]
        if row[0] is None:  # sensor_id is never null in an event
            assert all(x is None for x in row)
            out.append(None)
            continue
        head, size, rest = row[: 2 + n], row[2 + n], row[3 + n :]
        assert size == n
        if fmt.context:
            out.append((*head, *rest))
        else:
            assert all(x is None for x in rest[2:])  # no context for a flat format
            out.append((*head, *rest[:2]))
    return out


def _exact(row: tuple[Any, ...] | None) -> Any:
    """A row with each value's type, floats bit for bit."""
    if row is None:
        return None
    return tuple((type(x).__name__, x.hex() if isinstance(x, float) else x) for x in row)


def _verdicts(env: Any, corpora: dict[str, list[Record]], fmt: events.EventFormat) -> dict[str, Verdict]:
    """Java's and Python's reading of every record of the corpora, in one Flink job (each job costs seconds)."""
    records = [record for corpus in corpora.values() for record in corpus]
    java = _java(env, records, fmt)
    _, python = events.read_events([v for v, _ in records], [k for _, k in records], fmt=fmt)  # after Java: its clock
    out, at = {}, 0
    for name, corpus in corpora.items():
        out[name] = Verdict(corpus, java[at : at + len(corpus)], python[at : at + len(corpus)])
        at += len(corpus)
    return out


@dataclass
class Verdict:
    """One corpus read by both: each record's flat event, or None (Java: undecided; Python: a dead letter)."""

    records: list[Record]
    java: list[tuple[Any, ...] | None]
    python: list[tuple[Any, ...] | None]

    def accepted(self, name: str) -> tuple[int, int]:
        """(Java, Python) counts of accepted records, after checking that every row Java returned is Python's."""
        pairs = zip(self.records, self.java, self.python)
        wrong = [(r, j, p) for r, j, p in pairs if j is not None and _exact(j) != _exact(p)]
        counts = (sum(j is not None for j in self.java), sum(p is not None for p in self.python))
        print(f"{name}: Java accepted {counts[0]}, Python {counts[1]}, of {len(self.records)}")
        assert not wrong, f"{len(wrong)} records where Java's row is not Python's, e.g. {wrong[:3]}"
        return counts


# -- corpora ---------------------------------------------------------------------------------------------------


def _ts(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _nasty() -> list[Record]:
    """Hand-made cases at the edges of `_read` (some valid, most not)."""
    base = {"sensor_id": "s", "timestamp": TS, "temperature": 21.5, "humidity": 40, "pressure": None}
    now = datetime.now(UTC)
    stamps = [f"2026-11-27T00:00:01{f}Z" for f in ["", ".1", ".12", ".123", ".1234", ".12345", ".999999999"]]
    stamps += [
        "2026-11-27T00:00:01.1234567890Z",
        "2024-02-29T12:00:00Z",
        "2023-02-29T12:00:00Z",
        "2026-11-27T24:00:00Z",
    ]
    stamps += ["2026-11-27T23:59:60Z", "2026-11-27t00:00:01Z", "2026-11-27T00:00:01z", "2026-11-27 00:00:01Z"]
    stamps += ["2026-11-27T00:00:01.Z", "2026-11-27T00:00:01Z\n", "\u0662026-11-27T00:00:01Z", "0000-01-01T00:00:00Z"]
    stamps += ["2000-01-01T00:00:00.000Z", "1999-12-31T23:59:59.999Z", "2026-13-01T00:00:00Z"]
    stamps += [_ts(now + timedelta(days=1, seconds=s)) for s in (-7200, -61, -30, 30, 3600)]
    stamps += [_ts(now + timedelta(days=2)), _ts(now)]
    values = [
        "1e400", "-1e400", "1e-400", "-0", "-0.0", "-0e0", "1E2", "0.1e1", "1.0", "3", "2147483647", "2147483648",
        "-2147483648", "-2147483649", "9007199254740992", "9007199254740993", "-9007199254740993",
        "9223372036854775807", "9223372036854775808", "18446744073709551616", "123456789012345678901234567890",
        "5e-324", "2.2250738585072011e-308", "1.7976931348623157e308", "1e9", "1000000000.0000001", "-1e9",
        "0.30000000000000004", "true", "false", "null", '""', '"true"', '"x"', '"\\ud800"', '"\\udc00x"',
        '"\\ud83d\\ude00"', '"\\u0000"', '"\u00e9\u20ac\U0001f600"', "[]", "{}", '[1, "a", {"b": null}]',
        '{"a": {"b": 1}}', "[" * 20 + "]" * 20, "[" * 10 + "]" * 10, "NaN", "Infinity", "01", "1.", ".5", "+1",
        '"\\x41"', "'a'", '"\u0085"',
    ]  # fmt: skip
    cases: list[bytes] = []
    for stamp in stamps:
        cases.append(json.dumps({**base, "timestamp": stamp}).encode())
    fields = ["temperature", "humidity", "sensor_id", "is_anomaly", "anomaly_type", "extra"]
    nested = [("location", "building"), ("location", "floor"), ("location", "room"), ("device_info", "model")]
    nested += [("device_info", "firmware_version"), ("device_info", "battery_level")]
    for value in values:
        for field in fields:
            cases.append(json.dumps({**base, field: "@@"}).encode().replace(b'"@@"', value.encode()))
        for obj, field in nested:
            cases.append(json.dumps({**base, obj: {field: "@@"}}).encode().replace(b'"@@"', value.encode()))
        cases.append(json.dumps({**base, "location": "@@"}).encode().replace(b'"@@"', value.encode()))
    good = json.dumps(base).encode()
    cases += [
        b"\xef\xbb\xbf" + good,
        good + b" x",
        good + b" {}",
        good + b"{}",
        good + b"\x00",
        b" \t\r\n" + good + b"\n\r\t ",
        b"\x0c" + good,
        good.replace(b", ", b",\n  "),
        good.replace(b"{", b'{"temperature": 1, ', 1),
        good.replace(b"{", b'{"location": {"floor": 1, "floor": 2}, ', 1),
        good.replace(b"{", b'{"\\ud800": 1, ', 1),
        good.replace(b"{", b'{"sensor\\u005fid": "t", ', 1),
        good.replace(b'"s"', b'"s\xed\xa0\x80"'),
        good.replace(b'"s"', b'"s\xc0\x80"'),
        good.replace(b'"s"', b'"s\xf4\x90\x80\x80"'),
        good.replace(b'"s"', b'"s\xe2\x82"'),
        good.replace(b'"s"', b'"s\x1f"'),
        good.replace(b'"s"', b'"s\t"'),
        good.replace(b'"s"', b'"s\x7f"'),
        good.replace(b'"s"', b'"\\u0073"'),
        good.replace(b'"s"', b'""'),
        good.replace(b"{", b'{"deep": ' + b"[" * 40 + b"]" * 40 + b", ", 1),
        good.decode().encode("utf-16-le"),
        good.decode().encode("utf-16"),
        good.decode().encode("utf-32"),
        b"",
        b"   ",
        b"null",
        b"[]",
        b'"a string"',
        b"{} {}",
        good[:-1],
        good + b"}",
    ]
    records: list[Record] = [(c, b"s") for c in cases]
    return records + [(good, b"k" * (events.MAX_KEY_BYTES + 1)), (good, None), (None, b"s"), (None, None)]


def _mutants(valid: list[bytes], n: int, seed: int) -> list[bytes]:
    """Seeded mutations of valid events: bytes flipped, inserted, deleted, duplicated; values swapped or replaced."""
    rng = random.Random(seed)
    pieces = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"0", b"9", b"e", b"-", b".", b"\x00", b"\x80", b"\xff"]
    pieces += [b" ", b"\n", b"\\u", b"\\ud800", b"E400", b"00", b"true", b"null", b'"x"', b"\xc3\xa9"]
    out = []
    for _ in range(n):
        value = bytearray(rng.choice(valid))
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            op, at = rng.randrange(6), rng.randrange(len(value) + 1)
            if op == 0 and at < len(value):
                value[at] ^= 1 << rng.randrange(8)
            elif op == 1:
                value[at:at] = rng.choice(pieces)
            elif op == 2:
                del value[at : at + rng.randrange(1, 4)]
            elif op == 3:
                value[at:at] = value[rng.randrange(len(value)) :][: rng.randrange(1, 12)]
            else:  # two fields' values swapped, or one replaced by a value of another type
                obj = json.loads(rng.choice(valid))
                inner = [obj] + [v for v in obj.values() if isinstance(v, dict)]
                where = rng.choice(inner)
                a, b = rng.choice(list(where)), rng.choice(list(rng.choice(inner)))
                if op == 4:
                    where[a], obj[b] = obj.get(b), where[a]
                else:
                    where[a] = rng.choice([str(where[a]), [where[a]], {a: where[a]}, True, "", "true", None, 1e300])
                    where[a] = rng.choice([where[a], -5, 2**40, 2**60, 0.1, 1.5e-7, "\ud800", {"x": [1, {}]}])
                value = bytearray(json.dumps(obj, separators=rng.choice([(",", ":"), (", ", ": ")])).encode())
        out.append(bytes(value))
    return out


@pytest.fixture(scope="module")
def skab() -> tuple[events.EventFormat, list[bytes], list[tuple[bytes, str]]]:
    profile = profiles.infer([SKAB], "datetime", label_column="anomaly", name="skab").profile
    frame = replay.read_profile([SKAB], profile).events
    hostile = _module(TESTS / "integration" / "test_stream_profile.py")._hostile(profile)
    return profiles.event_format(profile), profiles.serialize(frame, profile)[1], hostile


@pytest.fixture(scope="module")
def default_format(table_env) -> dict[str, Verdict]:
    """The default wire format's corpora, read in one job."""
    frame = generator.simulate(n_sensors=20, duration_s=60, seed=7, start=datetime.now(UTC) - timedelta(hours=1))
    drifting = generator.simulate(n_sensors=5, duration_s=20, seed=8, anomaly_rate=0.5)
    generated = [events.serialize(f) for f in (frame, drifting)]
    stream_tests = _module(TESTS / "integration" / "test_stream.py")
    valid = events.serialize(generator.simulate(n_sensors=10, duration_s=10, seed=3, start="2026-11-27T00:00:00Z"))[1]
    corpora = {
        "generator": [(v, k) for keys, values in generated for v, k in zip(values, keys, strict=True)],
        "dead letters and odd records": [(v, k) for k, v in stream_tests.KEYED + stream_tests.ODD_VALID],
        "nasty cases": _nasty(),
        "mutants": [(v, b"s") for v in _mutants(valid, 4000, seed=1)],
    }
    return _verdicts(table_env, corpora, events.DEFAULT_FORMAT)


@pytest.fixture(scope="module")
def flat_format(table_env, skab) -> dict[str, Verdict]:
    """A flat profile's corpora (SKAB's eight channels, with bounds), read in one job."""
    fmt, values, hostile = skab
    assert not fmt.context and len(fmt.channels) == 8
    corpora = {
        "SKAB events": [(v, None) for v in values],
        "SKAB hostile": [(v, None) for v, _ in hostile],
        "SKAB mutants": [(v, None) for v in _mutants(values, 2000, seed=2)],
    }
    return _verdicts(table_env, corpora, fmt)


# -- the tests -------------------------------------------------------------------------------------------------


def test_java_accepts_every_generated_event_as_python_reads_it(default_format):
    java, python = default_format["generator"].accepted("generator")
    assert java == python == len(default_format["generator"].records)


def test_java_never_accepts_what_python_would_not_or_reads_it_otherwise(default_format):
    java, _ = default_format["dead letters and odd records"].accepted("dead letters and odd records")
    odd_valid = _module(TESTS / "integration" / "test_stream.py").ODD_VALID
    assert java == len(odd_valid)  # the oversized key and every dead letter: undecided
    java, python = default_format["nasty cases"].accepted("nasty cases")
    assert 0 < java < python


def test_java_on_a_flat_profile_with_bounds(flat_format):
    java, python = flat_format["SKAB events"].accepted("SKAB events")
    assert java == python == len(flat_format["SKAB events"].records)
    java, _ = flat_format["SKAB hostile"].accepted("SKAB hostile")
    assert java == 0
    java, _ = flat_format["SKAB mutants"].accepted("SKAB mutants")
    assert java > 0


def test_java_on_mutated_events(default_format):
    java, python = default_format["mutants"].accepted("mutants")
    assert 0 < java <= python
