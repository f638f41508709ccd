"""What a built page and an executed notebook must not show: pure functions over HTML text and notebook objects.

`tests/notebooks/test_book.py` runs them over `_build/`; `tests/unit/test_book_helpers.py` feeds them small pages and
notebooks that must fail and pass. Each returns the problems it found, one line each (an empty list when clean), so
that a failing test can say which page, which cell and what text.

- `raw_directives`: MyST that did not render, and shows as text. A fence whose title holds backticks, for example, is
  not a fence at all in CommonMark (a backtick fence's info string cannot contain a backtick): the page then shows
  "```{exercise} ..." and ":label: ..." and the solution in plain sight.
- `publication_problems`: what a published page must not carry: a link to the reader's own machine (127.0.0.1,
  localhost), a launch button (Binder, JupyterHub, Colab, a local JupyterLab), a pre-signed S3 URL (it carries an
  access key id and opens the object to whoever holds it).
- `exercise_numbers`: the numbers a page gives its exercises, to check that they count per chapter.
- `output_noise`: warnings, progress bars and log lines in the outputs of a notebook. They say nothing to a reader,
  and they change from run to run (timings, local paths, version numbers).
"""

from __future__ import annotations

import re
from typing import Any

from sensorops_book.layout import LOCAL_URL

RAW_DIRECTIVE = re.compile(
    r"(`{3,}|:{3,})\{[a-z][\w-]*\}"  # the opening of a fenced directive: ```{note}, :::{exercise}
    r"|\{(exercise|solution)(-start|-end)?\}"  # sphinx-exercise's names, in any other form
    r"|(^|\s):(label|class|nonumber|hidden):(\s|$)",  # a directive option left as text
    re.MULTILINE,
)

REMOVED_TAGS = {"remove-output", "remove-cell"}
"""Cells whose output the book does not show: not checked for noise. (`hide-output` is shown, folded: checked.)
`remove-stderr` and `remove-stdout` remove one stream of a cell: the other is checked."""

NOISE = {
    "a warning": re.compile(r"\b[A-Z]\w*Warning\b[:(]|^\s*warnings\.warn\(|(^|\s)WARNING[:\s]", re.MULTILINE),
    "a progress bar": re.compile(
        r"\r(?!\n)"  # a line drawn again in place (tqdm on a terminal or stderr)
        r"|\d+/\d+ \[\d+:\d\d(:\d\d)?<"  # tqdm's "3/21 [00:01<00:04"
        r"|\b\d+(\.\d+)?\s*\w*/s\]"  # "4.33fit/s]", "2.1it/s]"
        r"|\bit/s\]|IProgress|\d+%\|"
    ),
    "a log line": re.compile(
        r"^\s*(\d{4}[-/]\d\d[-/]\d\d[ T][\d:,.]+\s+)?\[?(DEBUG|INFO|WARNING|ERROR|CRITICAL)\]?[\s:]"  # logging
        r"|^(Successfully registered model|Registered model '|Created version '|Copied version '|View run |"
        r"View experiment at |🏃|🧪)",  # MLflow's prints
        re.MULTILINE,
    ),
}
"""What counts as noise in an output, by kind. Lines a lesson prints on purpose (a table, a state per line, a
`repr`) match none of these."""

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
"""A widget output: in these notebooks only a progress bar (tqdm in a kernel with ipywidgets) draws one."""


def raw_directives(html: str) -> list[str]:
    """The lines of a page's text that show MyST directive syntax (```{, :::{, :label:, {exercise}, ...).

    The whole text of the page body is searched, code blocks included: a broken fence often turns what follows it
    into a code block."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for node in soup(["script", "style", "head", "template"]):
        node.decompose()
    body = soup.select_one("article.bd-article") or soup.body or soup
    lines = body.get_text("\n").splitlines()
    return [line.strip()[:160] for line in lines if RAW_DIRECTIVE.search(line)]


SIGNED_URL = re.compile(r"X-Amz-(Signature|Credential)|AWSAccessKeyId\s*=|[?&]Signature=", re.IGNORECASE)
LAUNCH = re.compile(r"launch|binder|colab|jupyterhub|deepnote|thebe-launch", re.IGNORECASE)
LINKING = (("a", "href"), ("link", "href"), ("img", "src"), ("script", "src"), ("iframe", "src"), ("form", "action"))


def publication_problems(html: str) -> list[str]:
    """Links to the reader's machine, launch buttons and pre-signed URLs in a built page, one line each."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    found = []
    for tag, attr in LINKING:
        for node in soup.find_all(tag):
            url = str(node.get(attr) or "")
            if LOCAL_URL.match(url):
                found.append(f"a link to the reader's machine: <{tag} {attr}={url}>")
            if "/lab/tree/" in url or re.match(r"^(https?:)?//[^/]*(mybinder|colab\.research)", url):
                found.append(f"a launch link: <{tag} {attr}={url}>")
    for node in soup.select(".header-article-items *, .article-header-buttons *"):
        names = " ".join([*node.get("class", []), str(node.get("aria-label") or ""), str(node.get("title") or "")])
        if LAUNCH.search(names):
            found.append(f"a launch button: <{node.name} class={' '.join(node.get('class', []))!r}>")
            break
    for match in SIGNED_URL.finditer(html):
        found.append(f"a pre-signed URL: ...{html[max(0, match.start() - 60) : match.end() + 20]}...")
    return found


def exercise_numbers(html: str) -> list[str]:
    """The numbers of a page's exercises, in page order: `["3.1", "3.2"]` for "Exercise 3.1", "Exercise 3.2"."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    spans = soup.select("div.exercise > p.admonition-title > span.caption-number")
    return [re.sub(r"^\D*", "", span.get_text(" ", strip=True)) for span in spans]


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def output_noise(nb: Any) -> list[str]:
    """Warnings, progress bars and log lines among the outputs the book shows: `cell N: kind: text`, one a line."""
    found = []
    for index, cell in enumerate(nb.get("cells", [])):
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.get("cell_type") != "code" or REMOVED_TAGS & tags:
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream" and f"remove-{out.get('name')}" in tags:
                continue
            if kind == "stream":
                texts = [_text(out.get("text"))]
            elif kind in ("display_data", "execute_result"):
                data = out.get("data", {})
                if WIDGET_MIME in data:
                    found.append(f"cell {index}: a progress bar: a widget output ({_text(data.get('text/plain'))!r})")
                texts = [_text(data.get("text/plain"))] if set(data) == {"text/plain"} else []
            else:
                texts = []
            for text in texts:
                for what, pattern in NOISE.items():
                    if match := pattern.search(text):
                        line_start = text.rfind("\n", 0, match.start()) + 1
                        line = text[line_start:].lstrip("\r").split("\n")[0].split("\r")[0]
                        found.append(f"cell {index}: {what}: {line.strip()[:160]!r}")
    return found
