"""The book builds from the executed notebooks with warnings as errors, needs nothing from the network, and its
pages render in headless Chromium with every plotly figure drawn.

Runs after test_run_notebooks.py (see conftest.py); without executed copies the build fails and says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

import sensorops_book as book
from sensorops.errors import UserError
from sensorops_book import checks

pytestmark = pytest.mark.notebooks

LAYOUT = book.REPO
PAGES = book.toc_entries()


@pytest.fixture(scope="module")
def html_dir() -> Path:
    """Build the book once for this module; any failure fails every test that needs it, with the reason."""
    try:
        index = book.build(LAYOUT)
    except UserError as exc:
        pytest.fail(str(exc), pytrace=False)
    return index.parent


def expected_figures(entry: str) -> int:
    if not entry.startswith("notebooks/"):
        return 0
    return book.plotly_outputs(nbformat.read(LAYOUT.executed_dir / f"{Path(entry).name}.ipynb", as_version=4))


def test_book_builds_with_warnings_as_errors(html_dir: Path) -> None:
    missing = [e for e in PAGES if not (html_dir / f"{e}.html").exists()]
    assert not missing, f"pages listed in _toc.yml but not built: {missing}"
    figures = sum(expected_figures(e) for e in PAGES)
    assert figures > 0, "the executed notebooks show no plotly figure at all; the chapters are meant to plot"


def test_book_needs_no_network(html_dir: Path) -> None:
    external = []
    for page in sorted(html_dir.rglob("*.html")):
        soup = BeautifulSoup(page.read_text(), "html.parser")
        for tag, attr in (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src")):
            for node in soup.find_all(tag):
                url = node.get(attr) or ""
                if tag == "link" and not {"stylesheet", "preload", "icon"} & set(node.get("rel") or []):
                    continue
                if re.match(r"^(https?:)?//", url):
                    external.append(f"{page.relative_to(html_dir)}: <{tag} {attr}={url}>")
    assert not external, "the book must work offline, but loads:\n" + "\n".join(external)


def test_no_page_shows_raw_directives(html_dir: Path) -> None:
    raw = [f"{e}: {line}" for e in PAGES for line in checks.raw_directives((html_dir / f"{e}.html").read_text())]
    assert not raw, "MyST that did not render, shown as text (a fence with backticks in its title?):\n" + "\n".join(raw)


def test_pages_are_publishable(html_dir: Path) -> None:
    pages = sorted(html_dir.rglob("*.html"))
    assert len(pages) >= len(PAGES)
    problems = [
        f"{p.relative_to(html_dir)}: {line}" for p in pages for line in checks.publication_problems(p.read_text())
    ]
    assert not problems, "links to the reader's machine, launch buttons or pre-signed URLs:\n" + "\n".join(problems)


def test_exercises_are_numbered_per_chapter(html_dir: Path) -> None:
    wrong = {}
    for entry in book.toc_notebooks():
        numbers = checks.exercise_numbers((html_dir / f"{entry}.html").read_text())
        expected = [str(n) for n in range(1, len(numbers) + 1)]
        if not numbers or numbers != expected:
            wrong[entry] = numbers
    assert not wrong, f"exercises must count from 1 in every chapter, as in JupyterLab; the pages show {wrong}"


@pytest.mark.parametrize("entry", book.toc_notebooks())
def test_executed_notebook_has_no_noise(entry: str) -> None:
    path = LAYOUT.executed_dir / f"{Path(entry).name}.ipynb"
    assert path.exists(), f"no executed copy {path}: run the notebooks first (`make notebooks`)"
    noise = checks.output_noise(nbformat.read(path, as_version=4))
    assert not noise, f"{path.name}: warnings, progress bars or log lines in the page:\n" + "\n".join(noise[:20])


def test_sidebar_links_every_page(html_dir: Path) -> None:
    soup = BeautifulSoup((html_dir / f"{PAGES[0]}.html").read_text(), "html.parser")
    nav = soup.select_one("nav.bd-links") or soup
    links = {a.get("href", "").split("#")[0] for a in nav.find_all("a")}
    unlinked = [e for e in PAGES[1:] if not any(link.endswith(f"{Path(e).name}.html") for link in links)]
    assert not unlinked, f"the navigation does not link: {unlinked}"


@pytest.mark.parametrize("entry", PAGES)
def test_page_renders_in_chromium(entry: str, html_dir: Path, dom_dir: Path, chromium: Callable) -> None:
    page = html_dir / f"{entry}.html"
    assert page.exists(), f"{page} was not built"
    dom, log = chromium(page.as_uri())
    (dom_dir / f"{entry.replace('/', '__')}.html").write_text(dom)
    soup = BeautifulSoup(dom, "html.parser")

    article = soup.select_one("article.bd-article")
    assert article is not None, f"{entry}: no article in the rendered page (DOM saved in {dom_dir})"
    h1 = article.find("h1")
    assert h1 is not None and h1.get_text(strip=True), f"{entry}: the page has no title"
    assert len(article.get_text(" ", strip=True)) > 500, f"{entry}: the page is almost empty"

    errors = [line for line in log.splitlines() if "CONSOLE" in line and re.search(r"Uncaught|Error", line)]
    assert not errors, f"{entry}: JavaScript errors in the page:\n" + "\n".join(errors[:10])

    expected = expected_figures(entry)
    divs = article.select("div.plotly-graph-div")
    assert len(divs) == expected, f"{entry}: {len(divs)} plotly figures in the page, the notebook shows {expected}"
    undrawn = [d.get("id") for d in divs if "js-plotly-plot" not in d.get("class", []) or not d.select("svg.main-svg")]
    assert not undrawn, f"{entry}: plotly.js did not draw figures {undrawn} (is _static/plotly.min.js loaded?)"

    if entry.startswith("notebooks/"):
        number = Path(entry).name[:2]
        assert h1.get_text(strip=True).startswith(f"{number} ·"), f"{entry}: title {h1.get_text(strip=True)!r}"
        assert article.select(".exercise"), f"{entry}: no rendered exercise"
        assert article.select("details.dropdown, .solution.dropdown, .dropdown"), f"{entry}: no dropdown solution"
