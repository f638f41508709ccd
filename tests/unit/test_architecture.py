"""ARCHITECTURE.md's module order is true: every module of the library is listed, and imports only those before it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lib" / "sensorops"


def module_order() -> list[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    block = re.search(r"<!-- module order.*?```text\n(.*?)```", text, re.S)
    assert block, "ARCHITECTURE.md lost its module-order block"
    return [name for line in block.group(1).splitlines() for name in line.split(":", 1)[1].split()]


def top_level(module: str) -> str | None:
    """`sensorops.kafka_io.reader` -> `kafka_io`; None for the package itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "sensorops" and len(parts) > 1 else None


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "sensorops":
                found |= {f"sensorops.{alias.name}" for alias in node.names if alias.name != "__version__"}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def modules() -> dict[str, list[Path]]:
    by_module: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if parts == ("__init__.py",):
            continue
        by_module.setdefault(parts[0].removesuffix(".py"), []).append(path)
    return by_module


def test_every_module_is_listed_once() -> None:
    order = module_order()
    assert len(order) == len(set(order))
    assert sorted(order) == sorted(modules())


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_follow_the_order(module: str) -> None:
    order = module_order()
    allowed = set(order[: order.index(module)])
    for path in modules()[module]:
        for imported in imports(path):
            target = top_level(imported)
            if target is None or target == module:
                continue
            assert target in allowed, f"{path.relative_to(ROOT)} imports {imported}, listed after {module}"


def test_the_library_never_imports_the_book_tooling() -> None:
    for path in PACKAGE.rglob("*.py"):
        assert not any(i.startswith("sensorops_book") for i in imports(path)), path


def test_one_module_builds_kafka_consumers() -> None:
    builders = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py") if "KafkaConsumer(" in p.read_text()]
    assert builders == [Path("kafka_io/reader.py")]


def test_every_module_reads_in_one_sitting() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, f"modules over 450 lines: {long}"
