"""Every third-party module the code imports is declared where that code runs, and no further.

The library's imports are runtime `dependencies` (what `pip install .` gives a pod), except the local platform's
modules, which may use the `platform` extra inside the functions that `sensorops platform up|status|down` runs: a pod
imports `sensorops.platform.local` too (for the Flink client), so their module-level imports stay runtime ones.
The book's tooling in `tools/` may use the `book` extra too, and the tests anything in `all`. The library never
imports the tooling.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from sensorops.config import ROOT

LIB = ROOT / "lib" / "sensorops"
TOOLS = ROOT / "tools"
PLATFORM_ONLY = {p for p in (LIB / "platform").glob("*.py") if p.name not in ("__init__.py", "health.py")}
"""The local platform's modules (`health` and `require` serve every environment)."""
AIRFLOW_ONLY = {LIB / "pipeline" / "operators.py"}
"""Imported by the DAGs only, in Airflow."""
LOCAL = {"sensorops", "sensorops_book", "__future__", "conftest"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0])


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(*extras: str) -> set[str]:
    """The distributions `pip install '.[extras]'` asks for by name, following `sensorops[...]` self-references."""
    optional = project()["optional-dependencies"]
    names, todo, seen = set(), [*project()["dependencies"]], set()
    todo += [req for extra in extras for req in optional[extra]]
    while todo:
        req = todo.pop()
        if requirement_name(req) == "sensorops":
            for extra in re.search(r"\[(.*)\]", req).group(1).split(","):
                if extra.strip() not in seen:
                    seen.add(extra.strip())
                    todo += optional[extra.strip()]
        else:
            names.add(requirement_name(req))
    return names


def imported_modules(path: Path, lazy: bool = True) -> set[str]:
    """Top-level names of the modules a file imports (absolute imports only); with `lazy`, those in functions too."""
    tree = ast.parse(path.read_text())
    modules = set()
    for node in ast.walk(tree) if lazy else tree.body:
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def imports(path: Path, lazy: bool = True) -> set[str]:
    """The third-party modules a file imports."""
    return imported_modules(path, lazy) - set(sys.stdlib_module_names) - LOCAL


def undeclared(files: list[Path], allowed: set[str], lazy: bool = True) -> dict[str, list[str]]:
    """Third-party modules imported by `files` whose distribution is not in `allowed`."""
    owners = packages_distributions()
    missing = {}
    for path in files:
        for module in imports(path, lazy):
            dists = {normalize(d) for d in owners.get(module, [])}
            if not dists & allowed:
                missing[f"{path.relative_to(ROOT)}: {module}"] = sorted(dists) or ["not installed"]
    return missing


def test_the_runtime_library_imports_only_runtime_dependencies() -> None:
    files = [p for p in LIB.rglob("*.py") if p not in PLATFORM_ONLY | AIRFLOW_ONLY]
    missing = undeclared(files, declared())
    assert not missing, f"add these to pyproject.toml `dependencies` (a pod installs nothing else): {missing}"


def test_the_dags_operators_import_only_airflow_dependencies() -> None:
    missing = undeclared(sorted(AIRFLOW_ONLY), declared("airflow"))
    assert not missing, f"add these to the `airflow` extra in pyproject.toml: {missing}"


def test_the_local_platform_imports_only_platform_dependencies() -> None:
    missing = undeclared(sorted(PLATFORM_ONLY), declared("platform"))
    assert not missing, f"add these to the `platform` extra in pyproject.toml: {missing}"


def test_the_local_platform_imports_its_extra_lazily() -> None:
    missing = undeclared(sorted(PLATFORM_ONLY), declared(), lazy=False)
    assert not missing, f"a pod imports these modules: import the `platform` extra inside functions: {missing}"


def test_the_book_tooling_imports_only_book_dependencies() -> None:
    files = sorted(TOOLS.rglob("*.py"))
    assert files, f"no book tooling in {TOOLS}"
    missing = undeclared(files, declared("book"))
    assert not missing, f"add these to the `book` extra in pyproject.toml: {missing}"


def test_the_tests_import_only_declared_packages() -> None:
    missing = undeclared(sorted((ROOT / "tests").rglob("*.py")), declared("all"))
    assert not missing, f"add these to an extra in pyproject.toml (`test` for test-only packages): {missing}"


def test_the_library_does_not_import_the_tooling() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in LIB.rglob("*.py") if "sensorops_book" in imported_modules(p)]
    assert not offenders, f"lib/sensorops must not import tools/ (tools depend on the library): {offenders}"
    assert not (LIB / "book.py").exists(), "the book's tooling lives in tools/sensorops_book"
