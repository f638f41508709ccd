"""The dashboard without services: its page holds every panel, its queries are PromQL that names series the platform
has, and `/api/query_range` forwards range queries to the configured Prometheus and nothing else (a stub here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlsplit
from urllib.request import Request, urlopen

import pytest
import yaml

from sensorops.monitoring import dashboard, drift, drift_report, sources
from sensorops.monitoring.dashboard import PANELS
from sensorops.platform import layout

RANGE = "query=up&start=1000&end=1900&step=15"


class StubPrometheus(BaseHTTPRequestHandler):
    """Answers every GET with a range query's JSON and records its path; `/api/v1/query_range?query=bad(` fails as
    Prometheus does on a parse error."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        bad = parse_qs(urlsplit(self.path).query).get("query") == ["bad("]
        body = {"status": "error", "errorType": "bad_data", "error": "parse error"} if bad else {"status": "success"}
        data = json.dumps(body).encode()
        self.send_response(400 if bad else 200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    StubPrometheus.requests = []
    yield from serving(ThreadingHTTPServer(("127.0.0.1", 0), StubPrometheus))


@pytest.fixture
def site(stub: ThreadingHTTPServer) -> Iterator[str]:
    """The dashboard on a free port, in front of the stub."""
    host, port = stub.server_address[:2]
    server = dashboard.make_server(f"http://{host}:{port}/")
    for running in serving(server):
        yield running.url


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urlopen(Request(url, method=method), timeout=10) as response:
            return response.status, response.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def test_panels_have_unique_keys_and_legends_name_labels_their_queries_keep() -> None:
    assert len({p.key for p in PANELS}) == len(PANELS) >= 9
    for panel in PANELS:
        assert panel.queries and panel.title and panel.unit and panel.about
        for query in panel.queries:
            if not re.search(r"(?<![:\w])(sum|max|min|avg|count) *(\(|by )", query.expr):
                continue  # no aggregation: every label of the series is kept
            kept = {label.strip() for by in re.findall(r"by \(([^)]*)\)", query.expr) for label in by.split(",")}
            assert set(re.findall(r"\{(\w+)\}", query.legend)) <= kept, (panel.key, query.legend)


def test_the_page_has_a_card_for_every_panel_and_its_queries(site: str) -> None:
    status, body = get(site + "/")
    page = body.decode()
    assert status == 200
    for panel in PANELS:
        card = re.search(rf'<section class="panel" id="panel-{panel.key}".*?</section>', page, re.S)
        assert card, panel.key
        assert dashboard._html(panel.title) in card.group(0)
    embedded = json.loads(re.search(r'<script type="application/json" id="panels">(.*?)</script>', page, re.S)[1])
    assert [q["expr"] for p in embedded for q in p["queries"]] == [q.expr for p in PANELS for q in p.queries]
    assert '<script src="plotly.min.js">' in page and "https://" not in page  # offline: no CDN


def test_plotly_js_comes_from_the_plotly_package(site: str) -> None:
    status, body = get(site + "/plotly.min.js")
    assert status == 200
    assert body == dashboard.plotly_js().read_bytes()


def test_a_range_query_is_forwarded_to_prometheus(site: str, stub: ThreadingHTTPServer) -> None:
    status, body = get(f"{site}/api/query_range?{RANGE}")
    assert status == 200 and json.loads(body) == {"status": "success"}
    (path,) = StubPrometheus.requests
    assert urlsplit(path).path == "/api/v1/query_range"
    assert parse_qs(urlsplit(path).query) == parse_qs(RANGE)


def test_prometheus_errors_come_back_as_its_json(site: str) -> None:
    status, body = get(f"{site}/api/query_range?query=bad(&start=1&end=2&step=1")
    assert status == 400 and json.loads(body)["error"] == "parse error"


@pytest.mark.parametrize(
    "request_path",
    [
        f"/api/query_range?{RANGE}&target=http://example.com",  # a parameter a range query does not take
        f"/api/query_range?{RANGE}&query=up",  # a parameter twice
        "/api/query_range?start=1&end=2&step=1",  # no query
        "/api/v1/query_range?" + RANGE,  # Prometheus' own paths are not served
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        "/api/v1/query?query=up",
        "/../api/v1/query_range?" + RANGE,
    ],
)
def test_nothing_else_reaches_prometheus(site: str, request_path: str) -> None:
    status, _ = get(site + request_path)
    assert status in (400, 404)
    assert StubPrometheus.requests == []


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_is_served(site: str, method: str) -> None:
    status, _ = get(f"{site}/api/query_range?{RANGE}", method=method)
    assert status >= 400
    assert StubPrometheus.requests == []


def test_prometheus_down_is_a_502_that_names_it() -> None:
    server = dashboard.make_server("http://127.0.0.1:1")
    for running in serving(server):
        status, body = get(f"{running.url}/api/query_range?{RANGE}")
    assert status == 502
    assert "Prometheus is not reachable at http://127.0.0.1:1" in json.loads(body)["error"]


def test_it_binds_to_loopback_by_default() -> None:
    server = dashboard.make_server("http://127.0.0.1:1")
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    conf = (layout.DEPLOY / "supervisord.conf").read_text()
    program = re.search(r"\[program:dashboard\]\n(.*?)\n\n", conf, re.S)
    assert program, "supervisord.conf has no [program:dashboard]"
    assert "sensorops monitor dashboard --host 127.0.0.1 --port ${dashboard_port}" in program.group(1)
    assert "dashboard" in re.search(r"\[group:platform\]\nprograms=(.*)", conf)[1].split(",")
    assert "dashboard" in layout.PROGRAMS["prometheus"]
    assert list(layout.PORTS.values()).count(layout.PORTS["dashboard"]) == 1


def test_the_drift_threshold_is_the_drift_checks() -> None:
    (panel,) = [p for p in PANELS if p.key == "drift"]
    assert panel.threshold == drift.PSI_DRIFT


def series_names(expr: str) -> set[str]:
    """The pipeline's own series an expression reads (`sensorops_*` and the recording rules' `sensorops:*`)."""
    return set(re.findall(r"\bsensorops[_:][\w:]+", expr))


def test_every_sensorops_series_a_panel_reads_exists() -> None:
    """The exporter's, the recording rules' and what `sensorops drift check` pushes."""
    rules = yaml.safe_load((layout.DEPLOY / "prometheus" / "rules.yml").read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    pushed = set(re.findall(r'Gauge\(\s*"(sensorops_drift_\w+)"', Path(drift_report.__file__).read_text()))
    known = set(sources.HELP) | recorded | pushed
    read = {name for p in PANELS for q in p.queries for name in series_names(q.expr)}
    assert read and read <= known, read - known


def check_as_rules(promtool: Path, exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`promtool check rules` on the expressions as recording rules: it parses each one as Prometheus would."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_every_query_parses(promtool: Path, tmp_path: Path) -> None:
    result = check_as_rules(promtool, [q.expr for p in PANELS for q in p.queries], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_query_that_does_not_parse_fails_that_check(promtool: Path, tmp_path: Path) -> None:
    result = check_as_rules(promtool, ["sum by (job_name (up)"], tmp_path)
    assert result.returncode != 0


def test_the_dashboard_command_imports_none_of_the_heavy_stages() -> None:
    """`sensorops monitor dashboard` runs for as long as the platform: it must not carry pandas, MLflow and
    scikit-learn, which only other stages need (measured: 22 MiB resident instead of 304)."""
    probe = (
        "import sys; from sensorops.cli import build_parser; build_parser(['monitor', 'dashboard']); "
        "print(','.join(m for m in ('pandas', 'mlflow', 'sklearn', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
