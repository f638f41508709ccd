"""`sensorops monitor dashboard`: one page that shows the pipeline as it runs, drawn from Prometheus.

The panels are data (`PANELS`: a title, PromQL queries, a unit), shared by the page and its tests. The page embeds
them; its script asks this server for each query's last `WINDOW_S` every `REFRESH_S` and redraws each panel with
plotly.js, which the plotly package ships (no CDN: it works offline). A panel whose queries return nothing says "no
data yet" instead of drawing empty axes. The browser talks to this origin only: `/api/query_range` forwards a range
query, and nothing else, to the configured Prometheus (no open proxy). Ad-hoc queries belong in Prometheus' own UI,
which the header and every panel link to.

The standard library's HTTP server and plotly.js, rather than Panel or Streamlit: one static page and a proxy need no
framework, no websocket and no Python per viewer. Measured after a headless Chromium drew every panel
(`ps -o rss= -p PID`): 23 MiB resident for `dashboard.serve` alone; 270 MiB as `sensorops monitor dashboard`, nearly
all of it the CLI importing every stage's module (MLflow, scikit-learn, pandas) before it parses the command line.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.util import find_spec
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import urlopen

log = logging.getLogger(__name__)

REFRESH_S = 10
"""How often the page redraws: Prometheus scrapes every 10 s (Flink's pushes every 5 s)."""
WINDOW_S = 15 * 60
"""How far back each panel looks."""
STEP_S = 15
"""Seconds between points: 60 points a series over the window."""
PROXY_TIMEOUT_S = 10.0
QUERY_PARAMS = frozenset({"query", "start", "end", "step"})
"""What `/api/query_range` forwards: a range query's parameters, each once, and nothing else."""


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel; `legend` names each of its series (`{label}` takes the label's value)."""

    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One card of the page: its queries drawn as lines in one unit over the last `WINDOW_S`."""

    key: str
    title: str
    unit: str
    queries: tuple[Query, ...]
    about: str
    """One sentence under the title: what the panel shows and where it comes from."""
    threshold: float | None = None
    """Drawn as a dashed line (the alert or decision threshold)."""
    y_range: tuple[float, float] | None = None
    """Fixed bounds of the y axis (a ratio: 0 to 1); else from zero to the largest value."""


DEAD_LETTERS_BY_REASON = "flink_taskmanager_job_task_operator_reason_deadLetters"
"""The stream job's count of dead letters per `reason` (`stream.job.DEAD_LETTER_METRIC`)."""
SOURCE = 'operator_name=~"Source:.*"'
SINK = 'operator_name=~".*_sink_.*:_Writer"'
PANELS: tuple[Panel, ...] = (
    Panel(
        "throughput",
        "Throughput",
        "records/s",
        (
            Query(
                f"sum by (job_name) (flink_taskmanager_job_task_operator_numRecordsOutPerSecond{{{SOURCE}}})",
                "{job_name} in",
            ),
            Query(
                f"sum by (job_name) (flink_taskmanager_job_task_operator_numRecordsInPerSecond{{{SINK}}})",
                "{job_name} out",
            ),
        ),
        "Records each Flink job reads from Kafka, and writes to its Kafka sinks (features, dead letters, scores ...).",
    ),
    Panel(
        "latency",
        "Latency",
        "s",
        (
            Query(
                f"max by (job_name) (flink_taskmanager_job_task_operator_currentEmitEventTimeLag{{{SOURCE}}} >= 0)"
                " / 1000",
                "{job_name}: event time to source",
            ),
            Query(
                "max by (job_name) (flink_taskmanager_job_task_operator_KafkaProducer_request_latency_avg) / 1000",
                "{job_name}: Kafka write",
            ),
        ),
        "How old a reading is when a job's source emits it (event time to now), and how long a write to Kafka takes.",
    ),
    Panel(
        "lag",
        "Consumer lag",
        "records",
        (
            Query("sensorops:consumer_group_lag:sum", "{group} on {topic}"),
            Query("sum by (job_name) (flink_taskmanager_job_task_operator_pendingRecords)", "{job_name} pending"),
        ),
        "Records not yet committed per consumer group (the exporter), and not yet read per Flink job (its source).",
    ),
    Panel(
        "checkpoints",
        "Checkpoints",
        "per minute",
        (
            Query(
                "sum by (job_name) (increase(flink_jobmanager_job_numberOfCompletedCheckpoints[1m]))",
                "{job_name} completed",
            ),
            Query(
                "sum by (job_name) (increase(flink_jobmanager_job_numberOfFailedCheckpoints[1m]))", "{job_name} failed"
            ),
        ),
        "Checkpoints completed and failed per job: a failed one means the job could not save its state to S3.",
    ),
    Panel(
        "checkpoint_duration",
        "Checkpoint duration",
        "s",
        (Query("max by (job_name) (flink_jobmanager_job_lastCheckpointDuration) / 1000", "{job_name}"),),
        "How long each job's last checkpoint took, from its trigger to its acknowledgement.",
    ),
    Panel(
        "dead_letters",
        "Dead letters",
        "records/s",
        (
            Query(f"sum by (reason) (rate({DEAD_LETTERS_BY_REASON}[1m]))", "{reason}"),
            Query('sum by (topic) (rate(kafka_server_topic_messages_in_total{topic=~".+-dlq"}[1m]))', "all, {topic}"),
        ),
        "Readings a stream job could not use, per reason (the job's counters), and in all per dead-letter topic.",
    ),
    Panel(
        "alerts",
        "Scores and alerts",
        "records/s",
        (
            Query('sum by (topic) (rate(kafka_server_topic_messages_in_total{topic=~".*alerts"}[1m]))', "{topic}"),
            Query('sum by (topic) (rate(kafka_server_topic_messages_in_total{topic=~".*scores"}[1m]))', "{topic}"),
        ),
        "Alert episode changes (opened, updated, closed) the scoring job writes, and the readings it scores.",
    ),
    Panel(
        "firing",
        "Alerts firing in Prometheus",
        "alerts",
        (
            Query('count by (alertname) (ALERTS{alertstate="firing"})', "{alertname}"),
            Query('count(ALERTS{alertstate="firing"}) or vector(0)', "all"),
        ),
        "The alert rules of deploy/local/prometheus/rules.yml that fire (0: none).",
    ),
    Panel(
        "quality",
        "Live model quality",
        "ratio",
        (
            Query('sensorops_model_live_metric{metric=~"f1|false_alarm_rate"}', "{role} v{version} {metric}"),
            Query('sensorops_model_offline_metric{metric="f1"}', "v{version} f1 on its test period"),
            Query('sensorops_model_live_metric{role="champion", metric="flagged_rate"}', "flagged by v{version}"),
            Query('sensorops_model_live_metric{role="champion", metric="anomaly_rate"}', "truly anomalous"),
        ),
        "Each scored version's F1 and false alarm rate in the scoring job's newest window, against its offline F1; the "
        "share of readings the champion flagged, and the share the labels call anomalous.",
        y_range=(0.0, 1.0),
    ),
    Panel(
        "drift",
        "Drift per channel",
        "PSI",
        (Query("sensorops_drift_psi", "{column}"),),
        "Population stability index of each column at the last `sensorops drift check`; over 0.2 is drift.",
        threshold=0.2,
    ),
    Panel(
        "jobs",
        "Flink jobs",
        "count",
        (
            Query("sum(flink_jobmanager_numRunningJobs)", "running jobs"),
            Query("sum by (job_name) (increase(flink_jobmanager_job_numRestarts[5m]))", "{job_name} restarts (5 min)"),
        ),
        "Jobs running on the session cluster, and each job's restarts over the last five minutes.",
    ),
)


def plotly_js() -> Path:
    """plotly.js as the plotly package ships it."""
    spec = find_spec("plotly")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the plotly package is not installed")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


def forward(query_string: str, prometheus: str, timeout: float = PROXY_TIMEOUT_S) -> tuple[int, bytes]:
    """Answer `/api/query_range?<query_string>` from Prometheus' `/api/v1/query_range`: its status and JSON body."""
    params = parse_qs(query_string, keep_blank_values=True)
    if not params.keys() <= QUERY_PARAMS or "query" not in params or any(len(v) != 1 for v in params.values()):
        return HTTPStatus.BAD_REQUEST, _error(f"a range query takes {', '.join(sorted(QUERY_PARAMS))}, each once")
    url = f"{prometheus}/api/v1/query_range?{urlencode({k: v[0] for k, v in params.items()})}"
    try:
        with urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except HTTPError as exc:  # Prometheus' own answer (a query it cannot parse): its JSON error
        return exc.code, exc.read()
    except (URLError, OSError) as exc:
        return HTTPStatus.BAD_GATEWAY, _error(f"Prometheus is not reachable at {prometheus} ({exc})")


def _error(message: str) -> bytes:
    return json.dumps({"status": "error", "error": message}).encode()


class Dashboard(ThreadingHTTPServer):
    """The page, plotly.js and the range-query proxy, for one Prometheus."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], prometheus: str) -> None:
        self.prometheus = prometheus.rstrip("/")
        self.page = page(self.prometheus).encode()
        self.plotly_js = plotly_js()
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: Dashboard

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlsplit(self.path)
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", self.server.page)
        elif url.path == "/plotly.min.js":
            with self.server.plotly_js.open("rb") as js:
                self._send(HTTPStatus.OK, "text/javascript", None, self.server.plotly_js.stat().st_size)
                shutil.copyfileobj(js, self.wfile)
        elif url.path == "/api/query_range":
            status, body = forward(url.query, self.server.prometheus)
            self._send(status, "application/json", body)
        else:
            self._send(HTTPStatus.NOT_FOUND, "application/json", _error(f"no such page: {url.path}"))

    def _send(self, status: int, content_type: str, body: bytes | None, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if body is not None else length))
        self.send_header("Cache-Control", "max-age=86400" if content_type == "text/javascript" else "no-store")
        self.end_headers()
        if body is not None:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.address_string(), format % args)


def make_server(prometheus: str, host: str = "127.0.0.1", port: int = 0) -> Dashboard:
    """A dashboard bound to host:port (0: any free port), not serving yet."""
    return Dashboard((host, port), prometheus)


def serve(prometheus: str, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve the dashboard until interrupted."""
    with make_server(prometheus, host, port) as server:
        log.info("dashboard at %s, from Prometheus at %s", server.url, server.prometheus)
        server.serve_forever()


def page(prometheus: str) -> str:
    """The HTML page: a card per panel, filled by its script."""
    config = {"refresh_s": REFRESH_S, "window_s": WINDOW_S, "step_s": STEP_S, "prometheus": prometheus}
    cards = "\n".join(
        f'<section class="panel" id="panel-{p.key}" data-panel="{p.key}" data-state="loading">'
        f'<h2>{_html(p.title)} <span class="unit">{_html(p.unit)}</span></h2><p class="about">{_html(p.about)}</p>'
        f'<div class="plot"></div><p class="note">loading</p>'
        f'<a class="prom" href="{_html(graph_link(prometheus, p))}">open in Prometheus</a></section>'
        for p in PANELS
    )
    return (
        PAGE.replace("{{cards}}", cards)
        .replace("{{panels}}", _script_json([asdict(p) for p in PANELS]))
        .replace("{{config}}", _script_json(config))
        .replace("{{prometheus}}", _html(prometheus))
        .replace("{{refresh_s}}", str(REFRESH_S))
    )


def graph_link(prometheus: str, panel: Panel) -> str:
    """The panel's queries in Prometheus' classic graph page, over the dashboard's window."""
    params = {}
    for i, q in enumerate(panel.queries):
        params |= {f"g{i}.expr": q.expr, f"g{i}.tab": "0", f"g{i}.range_input": f"{WINDOW_S // 60}m"}
    return f"{prometheus}/classic/graph?{urlencode(params)}"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _script_json(value: object) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sensorops: the pipeline as it runs</title>
<style>
body { font-family: system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; background: #fafafa; }
header { display: flex; align-items: baseline; gap: 1.5em; flex-wrap: wrap; }
#grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
.panel { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 0.9em; }
.panel h2 { font-size: 1.05em; margin: 0.2em 0; } .unit { color: #777; font-weight: normal; font-size: 0.85em; }
.about { color: #555; font-size: 0.85em; margin: 0.2em 0 0.4em; } .prom { font-size: 0.8em; }
.plot { height: 280px; } .note { color: #777; font-size: 1.1em; text-align: center; margin: 0.4em 0; }
.panel[data-state="empty"] .plot, .panel[data-state="error"] .plot { display: none; }
.panel[data-state="empty"] .note { padding: 110px 0; border: 1px dashed #ccc; border-radius: 4px; }
.panel[data-state="error"] .note { color: #b00020; }
</style></head>
<body>
<header><h1>sensorops</h1><span>refreshes every {{refresh_s}} s; <span id="updated">loading</span></span>
<a href="{{prometheus}}/classic/graph">Prometheus: ad-hoc queries</a>
<a href="{{prometheus}}/classic/alerts">alert rules</a></header>
<main id="grid">
{{cards}}
</main>
<script src="plotly.min.js"></script>
<script type="application/json" id="panels">{{panels}}</script>
<script type="application/json" id="config">{{config}}</script>
<script>
const PANELS = JSON.parse(document.getElementById("panels").textContent);
const CONFIG = JSON.parse(document.getElementById("config").textContent);

function legend(template, metric) {
  return template.replace(/\\{(\\w+)\\}/g, (_, label) => metric[label] ?? "");
}

async function series(query, start, end) {
  const params = new URLSearchParams({query: query.expr, start, end, step: CONFIG.step_s});
  const response = await fetch("api/query_range?" + params);
  const body = await response.json();
  if (body.status !== "success") throw new Error(body.error || response.statusText);
  return body.data.result.map(s => ({
    x: s.values.map(v => new Date(v[0] * 1000)), y: s.values.map(v => Number(v[1])),
    name: legend(query.legend, s.metric), type: "scatter", mode: "lines",
  }));
}

async function draw(panel) {
  const card = document.getElementById("panel-" + panel.key);
  const plot = card.querySelector(".plot"), note = card.querySelector(".note");
  const end = Date.now() / 1000, start = end - CONFIG.window_s;
  try {
    const traces = (await Promise.all(panel.queries.map(q => series(q, start, end)))).flat();
    if (!traces.some(t => t.y.some(Number.isFinite))) {
      Plotly.purge(plot);
      card.dataset.state = "empty";
      note.textContent = "no data yet";
      return;
    }
    if (panel.threshold !== null) {
      traces.push({x: [new Date(start * 1000), new Date(end * 1000)], y: [panel.threshold, panel.threshold],
                   name: "threshold", mode: "lines", line: {dash: "dash", color: "#b00020"}});
    }
    const layout = {
      margin: {l: 50, r: 10, t: 10, b: 30}, height: 280, showlegend: true,
      legend: {orientation: "h", y: -0.15, font: {size: 10}},
      xaxis: {type: "date", range: [new Date(start * 1000), new Date(end * 1000)]},
      yaxis: {title: {text: panel.unit}, rangemode: "tozero", range: panel.y_range || undefined},
    };
    card.dataset.state = "ok";
    note.textContent = "";
    await Plotly.react(plot, traces, layout, {displaylogo: false, responsive: true});
  } catch (error) {
    card.dataset.state = "error";
    note.textContent = "error: " + error.message;
  }
}

async function refresh() {
  await Promise.all(PANELS.map(draw));
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

refresh();
setInterval(refresh, CONFIG.refresh_s * 1000);
</script>
</body></html>
"""
