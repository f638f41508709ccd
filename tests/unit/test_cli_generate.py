"""`sensorops generate`, `replay` and `bench`: bad arguments get a one-line error and exit code 2, before any Kafka."""

from __future__ import annotations

import pytest

from sensorops import cli


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--interval", "-1"], "the interval must be a positive number of seconds, got -1.0"),
        (["generate", "--anomaly-rate", "1.5"], "--anomaly-rate must be between 0 and 0.5, got 1.5"),
        (["generate", "--sensors", "0"], "the number of sensors must be at least 1, got 0"),
        (["generate", "--duration", "0"], "--duration must be positive"),
        (["generate", "--days", "2"], "--days is for --mode backfill"),
        (["generate", "--mode", "backfill", "--start", "someday"], "--start 'someday' is not a timestamp"),
        (["generate", "--mode", "backfill", "--start", "9999-01-01"], "outside 2000 .. a day from now"),
        (["generate", "--mode", "backfill", "--start", "1990-01-01"], "outside 2000 .. a day from now"),
        (["generate", "--workers", "0"], "--partitions and --workers must be at least 1"),
        (["replay", "missing.csv", "--timestamp-column", "t", "--map", "temperature=T"], "no such file: missing.csv"),
        (
            ["replay", "x.csv", "--timestamp-column", "t", "--speed", "fast"],
            "--speed must be a positive factor or 'max'",
        ),
        (["replay", "x.csv", "--timestamp-column", "t", "--map", "colour=C"], "cannot map 'colour'"),
        (["bench", "generate", "--workers", "one"], "--workers takes a comma-separated list"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"more than one line: {err!r}"
    assert message in err
    assert "Traceback" not in err
