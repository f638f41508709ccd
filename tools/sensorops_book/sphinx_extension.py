"""A Sphinx extension for the book: exercises numbered per chapter, no link to the reader's machine, plotly.js.

`_config.yml` loads it through jupyter-book's `sphinx.local_extensions`, whose path is relative to the `_config.yml`
jupyter-book reads, i.e. the staged copy in `_build/book/`: `../../tools`. jupyter-book appends that folder to
`sys.path` before Sphinx loads the extension, so the build finds it however `jupyter-book build _build/book` is
started. `tests/unit/test_notebook_structure.py` checks that the path still reaches `tools/` from the staging folder.

Exercises: sphinx-exercise numbers them with Sphinx's `numfig`, which without a numbered toctree counts across the
whole book (chapter 03 started at "Exercise 8"), and with one puts a section number in every heading and the
TOC's position, not the chapter's, in front of each exercise. Neither sphinx-exercise nor Jupyter Book 1.x has a
setting for per-page numbering (Sphinx issue 7135 asks for one), so `number_per_chapter` renumbers the exercises
once Sphinx has assigned its numbers: each page counts from 1, which is also how jupyterlab-myst numbers them in
the notebook (`make lab`), so "exercise 2 of chapter 03" is the same exercise in the book and in JupyterLab.
Sphinx's numbers live in `env.toc_fignumbers`, which sphinx-exercise and `{numref}` read.

No launch button, and no link to 127.0.0.1 or localhost: the book is published, and such a link leads nowhere for a
reader without the platform running (or to whatever that reader runs on the port). The setup page says where each
UI lives on the reader's machine, as text. The notebooks' outputs keep their links to MLflow runs (in JupyterLab
they open the learner's own MLflow); `unlink_local` shows them in the book as the address in code instead.

plotly.js is copied into the HTML output rather than put in the sources'
`_static/`, where jupyter-book would load it on every page; it is loaded on the pages that have a figure only.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from sensorops.errors import UserError
from sensorops_book.layout import LOCAL_URL, PLOTLY_DIV_CLASS, PLOTLY_JS


def plotly_js_path() -> Path:
    """The plotly.js bundled with the installed plotly package (the version that wrote the figures)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_JS
    if not path.exists():
        raise UserError(f"plotly.js not found at {path}; reinstall plotly.")
    return path


PER_CHAPTER = ("exercise",)
"""The numbered kinds (Sphinx figtypes) that count per page rather than across the book."""


def number_per_chapter(
    fignumbers: dict[str, dict[str, dict[str, tuple[int, ...]]]], figtypes: tuple[str, ...] = PER_CHAPTER
) -> list[str]:
    """Renumber `figtypes` in Sphinx's `{docname: {figtype: {id: number}}}` (ids in document order) from 1 on each
    page. Returns the pages whose numbers changed."""
    changed = []
    for docname, by_type in fignumbers.items():
        for figtype in figtypes:
            numbers = by_type.get(figtype, {})
            renumbered = {key: (n,) for n, key in enumerate(numbers, start=1)}
            if renumbered != numbers:
                by_type[figtype] = renumbered
                changed.append(docname)
    return sorted(set(changed))


def _number_per_chapter(app: Any, env: Any) -> list[str]:
    """After Sphinx's own numbering (`env-get-updated`, run at the default priority)."""
    return number_per_chapter(env.toc_fignumbers)


LINK = re.compile(r"<a\b[^>]*?\bhref=\"([^\"]*)\"[^>]*>(.*?)</a>", re.DOTALL)


def _code(text: str) -> str:
    return f'<code class="docutils literal notranslate"><span class="pre">{text}</span></code>'


def unlink_local(body: str) -> str:
    """Every link to the reader's own machine as its address in code: `<a href=URL>URL</a>` becomes the code URL,
    `<a href=URL>text</a>` becomes `text (URL)` with the URL in code. Other links stay."""

    def replace(match: re.Match) -> str:
        href, inner = match.group(1), match.group(2)
        if not LOCAL_URL.match(href):
            return match.group(0)
        if re.sub(r"<[^>]+>", "", inner).strip() == href:
            return _code(href)
        return f"{inner} ({_code(href)})"

    return LINK.sub(replace, body)


def _unlink_local(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if "body" in context:
        context["body"] = unlink_local(context["body"])


def _add_plotly_js(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Load plotly.js, before the page's figures, on the pages that have figures."""
    if PLOTLY_DIV_CLASS in context.get("body", ""):
        app.builder.add_js_file(PLOTLY_JS, priority=200)  # this page only (reverted for the next page)


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Drop repeated inline scripts: sphinx-thebe (loaded by jupyter-book even with thebe off) registers its
    `const THEBE_JS_URL = ...` twice, and the second copy is a JavaScript error on every page."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (getattr(script, "filename", None) or "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = sorted(unique, key=lambda js: getattr(js, "priority", 500))


def _copy_plotly_js(app: Any, exception: Exception | None) -> None:
    """Ship plotly.js with the book. (Not via the source `_static/`: jupyter-book would load it on every page.)"""
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plotly_js_path(), static / PLOTLY_JS)


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point."""
    app.connect("env-get-updated", _number_per_chapter, priority=900)
    app.connect("html-page-context", _unlink_local)
    app.connect("html-page-context", _add_plotly_js)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.connect("build-finished", _copy_plotly_js)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
