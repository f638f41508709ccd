"""Every CLI error is one line that says what to do, and no input gets a traceback (issue 13).

No service is asked: every endpoint is a closed port, or a local HTTP server that answers garbage; the platform's
home is a temporary folder. The hostile inputs are files, numbers, dates and option values.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sensorops import cli, replay
from sensorops.platform.health import SERVICES

CLOSED = "http://127.0.0.1:1"
MAKE_UP = "make up"


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service at a closed port (the environment wins over the repository's .env), a short Kafka bootstrap."""
    for name, value in {
        "SENSOROPS_HOME": str(tmp_path / "home"),
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "FLINK_REST_URL": CLOSED,
        "MLFLOW_TRACKING_URI": CLOSED,
        "AWS_ENDPOINT_URL": CLOSED,
        "MLFLOW_S3_ENDPOINT_URL": CLOSED,
        "AIRFLOW_API_URL": CLOSED,
        "PROMETHEUS_URL": CLOSED,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "SENSOROPS_KAFKA_BOOTSTRAP_MS": "300",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def files(tmp_path: Path) -> None:
    """The hostile files, in the working directory."""
    (tmp_path / "good.csv").write_text("ts,temp\n2024-01-01T00:00:00,20\n")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "latin.csv").write_bytes("ts,temp,b\u00e4\n2024-01-01T00:00:00,20,\u00e9\n".encode("latin-1"))
    (tmp_path / "huge.csv").write_text("ts,temp\n2024-01-01T00:00:00," + "9" * 300_000 + "\n")
    (tmp_path / "dates.csv").write_text("ts,temp\n9999-01-01,20\n1900-01-01,20\ngarbage,20\n,\n")
    (tmp_path / "folder.csv").mkdir()


def one_error(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run the CLI; return its exit code and its one line of stderr, checked to be one line and no traceback."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"not one line: {err!r}"
    assert lines[0].startswith(f"sensorops {argv[0]}: error: "), lines[0]
    return code, lines[0]


REPLAY = ["replay", "--timestamp-column", "ts", "--map", "temperature=temp", "--speed", "max"]

USER_ERRORS = [
    # files
    ([*REPLAY, "missing.csv"], "no such file: missing.csv"),
    ([*REPLAY, "folder.csv"], "is a directory"),
    ([*REPLAY, "/dev/null"], "not a regular file"),
    ([*REPLAY, "empty.csv"], "has no header line"),
    ([*REPLAY, "binary.csv"], "give its encoding"),
    ([*REPLAY, "latin.csv"], "--encoding latin-1"),
    ([*REPLAY, "latin.csv", "--encoding", "no-such-codec"], "unknown text encoding 'no-such-codec'"),
    ([*REPLAY, "latin.csv", "--encoding", "rot13"], "unknown text encoding 'rot13'"),
    ([*REPLAY, "huge.csv"], "no row of huge.csv could be replayed"),
    ([*REPLAY, "dates.csv"], "no row of dates.csv could be replayed"),
    ([*REPLAY, "good.csv", "--delimiter", ""], "the delimiter must be one character"),
    ([*REPLAY, "good.csv", "--speed", "nan"], "--speed must be a positive factor"),
    ([*REPLAY, "good.csv", "--kafka-servers", "garbage::::"], "give host:port"),
    ([*REPLAY, "good.csv", "--topic", "bad topic!"], "is not a Kafka topic name"),
    ([*REPLAY, "good.csv", "--topic", ""], "is not a Kafka topic name"),
    # numbers and dates
    (["generate", "--seed", "-1"], "the seed must be a non-negative integer"),
    (["generate", "--sensors", "100000000000"], "the number of sensors must be at most"),
    (["generate", "--duration", "inf"], "--duration must be positive"),
    (["generate", "--duration", "nan"], "--duration must be positive"),
    (["generate", "--mode", "backfill", "--days", "1e9"], "ask for at most"),
    (["generate", "--mode", "backfill", "--duration", "1e300"], "ask for at most"),
    (["generate", "--mode", "backfill", "--start", "1900-01-01"], "choose a start in that range"),
    (["generate", "--mode", "backfill", "--start", "garbage"], "is not a timestamp"),
    (["generate", "--mode", "backfill", "--kafka-servers", "h:99999"], "give host:port"),
    (["stream", "submit", "--checkpoint-interval", "nan"], "--checkpoint-interval must be a number"),
    (["stream", "submit", "--parallelism", "0"], "--parallelism must be a number of at least 1"),
    (["stream", "submit", "--name", " "], "--name must not be empty"),
    (["stream", "status", "--watch", "-1"], "--watch must be a number"),
    (["train", "--start", "garbage"], "not a date or hour"),
    (["train", "--start", "2024-01-02", "--end", "2024-01-01"], "before it starts"),
    (["train", "--start", "1900-01-01", "--end", "9999-12-31"], "ask for less"),
    (["train", "--start", "2024-01-01", "--train-fraction", "nan"], "--train-fraction must be between 0 and 1"),
    (["train", "--start", "2024-01-01", "--max-search-rows", "-5"], "--max-search-rows must be 0"),
    (["train", "--start", "2024-01-01", "--models", "bogus"], "unknown model bogus"),
    (["bench", "generate", "--workers", ",,"], "--workers takes a comma-separated list"),
    (["bench", "stream", "--rate", "nan"], "--rate must be a positive number"),
    (["bench", "stream", "--events", "0"], "--events must be a positive number"),
]


@pytest.mark.parametrize("argv, says", USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS])
def test_bad_input_is_one_line_that_says_what_to_do(argv: list[str], says: str, capsys) -> None:
    code, line = one_error(argv, capsys)
    assert code == 2
    assert says in line


UNREACHABLE = [
    [*REPLAY, "good.csv"],
    [*REPLAY, "latin.csv", "--encoding", "latin-1"],
    ["generate", "--mode", "backfill", "--duration", "1"],
    ["stream", "status"],
    ["stream", "cancel"],
    ["stream", "submit"],
    ["train", "--start", "2024-01-01", "--no-mlflow"],
    ["train", "--start", "2024-01-01"],
]


@pytest.mark.parametrize("argv", UNREACHABLE, ids=[" ".join(a) for a in UNREACHABLE])
def test_an_unreachable_service_names_make_up(argv: list[str], capsys) -> None:
    code, line = one_error(argv, capsys)
    assert code == 2
    assert MAKE_UP in line and "is not reachable" in line


@pytest.fixture(params=[500, 200])
def garbage_http(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local HTTP server that answers every request with HTML, with status 500 or 200."""
    status = request.param

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Bad Gateway</body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_PATCH = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("argv", [["stream", "status"], ["stream", "cancel"]])
def test_a_service_that_answers_garbage_is_one_line(argv, garbage_http, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FLINK_REST_URL", garbage_http)
    code, line = one_error(argv, capsys)
    assert code == 2
    assert "sensorops platform status" in line


def test_an_unreadable_file_says_so(monkeypatch, capsys) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(replay.Path, "open", refuse)
    code, line = one_error([*REPLAY, "good.csv"], capsys)
    assert code == 2
    assert "cannot read good.csv: Permission denied; check the path and its permissions" in line


def test_platform_status_with_everything_down_exits_1_without_traceback(capsys) -> None:
    assert cli.main(["platform", "status"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert out.count("DOWN") == len(SERVICES)


@pytest.mark.parametrize("verbose", [False, True])
def test_an_unexpected_error_is_one_line_and_its_traceback_needs_v(verbose, monkeypatch, capsys) -> None:
    def broken(args):
        raise RuntimeError("the unexpected\nover two lines")

    monkeypatch.setattr("sensorops.cli.stream.run_status", broken)
    assert cli.main(["-v", "stream", "status"] if verbose else ["stream", "status"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == (
        "sensorops stream: internal error: RuntimeError: the unexpected over two lines "
        "(run with -v for the traceback; please report it)"
    )
    assert ("Traceback" in err) is verbose


def test_ctrl_c_exits_130(monkeypatch, capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("sensorops.cli.stream.run_status", interrupted)
    assert cli.main(["stream", "status"]) == 130
