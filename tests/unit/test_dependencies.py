"""Every third-party module the library imports is a declared dependency, so `pip install .` alone is enough."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from sensorops.config import ROOT


def imported_top_level_modules() -> set[str]:
    modules = set()
    for path in (ROOT / "lib" / "sensorops").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"sensorops", "__future__"}


def declared() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}


def test_every_imported_package_is_declared():
    owners = packages_distributions()
    undeclared = {}
    for module in imported_top_level_modules():
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if not dists & declared():
            undeclared[module] = sorted(dists) or ["not installed"]
    assert not undeclared, f"add these to pyproject.toml dependencies: {undeclared}"
