"""Where the book's sources and build products live, and what `_toc.yml` lists.

The constants shared by the build and the Sphinx extension (the plotly MIME type and file, the JupyterLab port)
live here too, so that `staging` and `sphinx_extension` agree without importing each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensorops import config

ROOT = config.ROOT

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"
PLOTLY_DIV_CLASS = "plotly-graph-div"
LAB_PORT = 8899  # not 8888: the SeaweedFS filer listens there
LAB_URL = f"http://127.0.0.1:{LAB_PORT}"
LOCAL_URL = re.compile(r"^(https?:)?//(127(\.\d+){3}|localhost|0\.0\.0\.0|\[::1\])([:/?#]|$)", re.IGNORECASE)
"""A URL on the reader's own machine: in the published book a link to it leads nowhere (or to another service)."""

TOOLS_DIR = Path(__file__).resolve().parents[1]
"""The folder that holds this package (not installed): `_config.yml`'s `local_extensions` must point here."""


@dataclass(frozen=True)
class Layout:
    """Where the book's sources and build products live, relative to a repository root."""

    root: Path = ROOT

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    @property
    def pages_dir(self) -> Path:
        return self.root / "book"

    @property
    def config_file(self) -> Path:
        return self.root / "_config.yml"

    @property
    def toc_file(self) -> Path:
        return self.root / "_toc.yml"

    @property
    def executed_dir(self) -> Path:
        """papermill's output: the executed copies the book renders."""
        return self.root / "_build" / "notebooks"

    @property
    def staging_dir(self) -> Path:
        """The book's sources with the executed notebooks in place; jupyter-book builds here."""
        return self.root / "_build" / "book"

    @property
    def html_dir(self) -> Path:
        return self.staging_dir / "_build" / "html"


REPO = Layout()


def notebook_sources(layout: Layout = REPO) -> list[Path]:
    """The chapter notebooks (`NN_name.ipynb`), in filename order, which is reading and test order."""
    folder = layout.notebooks_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def toc_entries(layout: Layout = REPO) -> list[str]:
    """Every `file:` of `_toc.yml` (root first), in reading order, without suffix."""
    import yaml

    toc = yaml.safe_load(layout.toc_file.read_text())
    entries = [str(toc["root"])]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                entries.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    return [re.sub(r"\.(ipynb|md)$", "", e) for e in entries]


def toc_notebooks(layout: Layout = REPO) -> list[str]:
    """The TOC entries under `notebooks/`, e.g. `notebooks/01_generate_sensor_data`."""
    return [e for e in toc_entries(layout) if e.startswith("notebooks/")]
