"""The platform's dashboard in headless Chromium while a stream job runs (`stream_job`, conftest.py) and after a drift
check pushed its scores: every panel draws what Prometheus holds, and a screenshot of the page is kept in
_build/dashboard/. About a minute and a half.

The dashboard is the platform's (`DASHBOARD_URL` points the test at another one, such as `sensorops monitor dashboard
--port 18050` started by hand). The panels the scoring job feeds (its scores and alerts, live model quality) have data
only once a scoring job has run on the platform; there, the test checks that the page shows what Prometheus has:
a plot, or "no data yet".
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from bs4 import BeautifulSoup
from kafka import KafkaProducer
from prometheus_client import delete_from_gateway

from sensorops import config
from sensorops.monitoring import dashboard, drift, drift_report, promql
from sensorops.monitoring.dashboard import PANELS, Panel
from sensorops.platform.health import dashboard_url
from sensorops.platform.layout import PORTS
from sensorops.waiting import wait_until

pytestmark = pytest.mark.integration

SCORING_PANELS = {"alerts", "quality"}
"""Fed by the scoring job only, which this test does not run."""
SCREENSHOT = config.ROOT / "_build" / "dashboard" / "dashboard.png"
WINDOW = "1280,2600"
"""Tall enough for every panel at 1280 pixels wide (two columns)."""
BUDGET_MS = 8000
"""Virtual time for the page's first round of queries and drawing (Chromium waits for the fetches)."""


def flink_label(name: str) -> str:
    """A job name as Flink's reporter writes it in labels (`-` becomes `_`)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def has_data(panel: Panel) -> bool:
    """Whether Prometheus has a value for any of the panel's queries in the dashboard's window."""
    minutes = dashboard.WINDOW_S / 60
    return any(not promql.series(q.expr, minutes, dashboard.STEP_S).empty for q in panel.queries)


@pytest.fixture(scope="module")
def site(settings) -> str:
    """The dashboard's URL, once it answers."""
    url = dashboard_url()
    try:
        page = requests.get(url, timeout=10)
    except requests.ConnectionError:
        pytest.fail(
            f"the dashboard is not answering at {url}; `make up` starts it (program `dashboard`)", pytrace=False
        )
    assert page.ok and 'id="panel-throughput"' in page.text, f"{url} is not the dashboard"
    return url


@pytest.fixture(scope="module")
def drift_scores() -> Iterator[None]:
    """PSI per column in Prometheus: the platform's last `sensorops drift check`, else a check of a window without
    drift that this test pushes (and deletes afterwards, so that the platform's state is left as it was)."""
    if promql.instant("sensorops_drift_psi"):
        yield
        return
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"temperature": rng.normal(21, 1, 2_000), "humidity": rng.normal(45, 5, 2_000)})
    window = pd.DataFrame({"temperature": rng.normal(21, 1, 500), "humidity": rng.normal(45, 5, 500)})
    report = drift.compare(reference, window)
    assert not report.drift_detected
    gateway = f"127.0.0.1:{PORTS['pushgateway']}"
    drift_report.push(report, gateway)
    try:
        wait_until(lambda: promql.instant("sensorops_drift_psi"), timeout=60, interval=2, message="no drift scores")
        yield
    finally:
        delete_from_gateway(gateway, job=drift_report.PUSH_JOB)


@pytest.fixture(scope="module")
def fed(settings, stream_job, dead_letters, drift_scores) -> str:
    """The job's name in Flink's labels, once Prometheus has every series its panels draw. The dead letters are sent
    once more after Prometheus first saw the topic's counter: a rate counts only what arrives after that."""
    job = flink_label(stream_job.name)
    dead = f'kafka_server_topic_messages_in_total{{topic="{stream_job.dead_letter_topic}"}}'
    wait_until(lambda: promql.instant(dead), timeout=90, interval=2, message=f"Prometheus has no {dead}")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for bad in dead_letters:
        producer.send(stream_job.source_topic, bad)
    producer.close()
    wanted = [
        f"rate({dead}[1m]) > 0",
        f'flink_jobmanager_job_numberOfCompletedCheckpoints{{job_name="{job}"}} > 1',
        f'flink_taskmanager_job_task_operator_numRecordsOutPerSecond{{job_name="{job}", operator_name=~"Source:.*"}}',
        f'sensorops:consumer_group_lag:sum{{group="{stream_job.group_id}"}}',
    ]
    for expr in wanted:
        wait_until(lambda e=expr: promql.instant(e), timeout=90, interval=2, message=f"Prometheus has no {expr}")
    return job


@pytest.fixture(scope="module")
def rendered(site: str, fed: str, chromium) -> BeautifulSoup:
    dom, log = chromium(site + "/", budget_ms=BUDGET_MS, window=WINDOW)
    assert "Uncaught" not in log, log[-2000:]
    return BeautifulSoup(dom, "html.parser")


def card(rendered: BeautifulSoup, panel: Panel):
    found = rendered.find("section", id=f"panel-{panel.key}")
    assert found is not None, f"no card for {panel.key}"
    return found


def test_every_panel_is_on_the_page_with_its_title(rendered) -> None:
    for panel in PANELS:
        assert card(rendered, panel).h2.get_text().startswith(panel.title)


def test_every_panel_the_platform_feeds_draws_its_data(rendered) -> None:
    for panel in PANELS:
        if panel.key in SCORING_PANELS:
            continue
        section = card(rendered, panel)
        assert has_data(panel), f"Prometheus has nothing for {panel.title}"
        assert section["data-state"] == "ok", f"{panel.title}: {section.select_one('.note').get_text()}"
        assert section.select(".main-svg") and section.select("g.trace path.js-line"), f"{panel.title}: no line"


def test_the_scoring_panels_show_what_prometheus_has(rendered) -> None:
    for panel in PANELS:
        if panel.key not in SCORING_PANELS:
            continue
        section = card(rendered, panel)
        if has_data(panel):
            assert section["data-state"] == "ok" and section.select("g.trace path.js-line"), panel.title
        else:
            assert section["data-state"] == "empty" and section.select_one(".note").get_text() == "no data yet"


def test_the_running_job_is_in_the_throughput_and_checkpoint_panels(rendered, fed: str) -> None:
    for key in ("throughput", "checkpoints", "latency"):
        legends = [t.get_text() for t in rendered.select(f"#panel-{key} text.legendtext")]
        assert any(fed in text for text in legends), (key, legends)


def png_size_and_rows(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct (filtered) pixel rows of an 8-bit PNG, with the standard library."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, at = {}, 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.setdefault(kind, []).append(data[at + 8 : at + 8 + length])
        at += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8
    stride = 1 + width * {2: 3, 6: 4}[color]
    pixels = zlib.decompress(b"".join(chunks[b"IDAT"]))
    return width, height, len({pixels[i : i + stride] for i in range(0, len(pixels), stride)})


def test_a_screenshot_shows_the_panels(site: str, fed: str, screenshot) -> None:
    screenshot(site + "/", SCREENSHOT, budget_ms=BUDGET_MS, window=WINDOW)
    width, height, rows = png_size_and_rows(SCREENSHOT)
    assert (width, height) == tuple(map(int, WINDOW.split(",")))
    assert rows > height // 4, f"{SCREENSHOT}: only {rows} distinct rows of {height}: a blank page?"
