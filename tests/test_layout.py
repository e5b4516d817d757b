"""The package layout, read from the code: stage import boundaries, public hooks only in benchmarks."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "edge", "collector", "kpi", "api", "simulator", "shopfloor")
# package -> the project packages it may import (besides itself); shopfloor, on top, may import all of them.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "edge": {"core"},
    "collector": {"core"},
    "kpi": {"core", "collector"},
    "api": {"core", "collector", "kpi"},
    "simulator": {"core"},
    "shopfloor": set(PACKAGES),
}


def source_files(*dirs: str) -> Iterator[Path]:
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            if "_pb2" not in path.name:
                yield path


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) for every absolute import anywhere in the tree, including lazy ones inside functions
    and importlib.import_module("...") with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.lineno, node.args[0].value


def crossings(package: str, path: Path, source: str) -> list[str]:
    """`FILE:LINE: package imports other.module` for each import the boundary rules forbid."""
    out = []
    for line, module in imported_modules(ast.parse(source)):
        top = module.split(".")[0]
        if top in PACKAGES and top != package and top not in ALLOWED[package]:
            out.append(f"{path.relative_to(ROOT)}:{line}: {package} imports {module}")
    return out


def test_no_import_crosses_a_stage_boundary() -> None:
    found = []
    for package in PACKAGES:
        for path in source_files(package):
            found += crossings(package, path, path.read_text())
    assert found == [], "imports that cross a stage boundary:\n" + "\n".join(found)


@pytest.mark.parametrize(("package", "source"), [
    ("core", "from edge.runner import Edge\n"),
    ("edge", "def f():\n    import collector.writer\n"),
    ("collector", "def f():\n    from edge.uplink import Outgoing\n"),
    ("kpi", "import api.main\n"),
    ("api", "from edge import drivers\n"),
    ("simulator", "import importlib\nimportlib.import_module('edge.drivers.sparkplug.codec')\n"),
])
def test_the_boundary_check_sees_a_crossing(package: str, source: str) -> None:
    assert len(crossings(package, ROOT / package / "x.py", source)) == 1


def test_allowed_imports_pass_the_boundary_check() -> None:
    assert crossings("kpi", ROOT / "kpi" / "x.py", "from collector.db import migrate\nimport core.plant\n") == []
    assert crossings("shopfloor", ROOT / "shopfloor" / "x.py", "import edge.runner\nimport kpi.job\n") == []


def private_reaches(path: Path, source: str) -> list[str]:
    """Private attributes of other objects, private names imported from the project, and monkeypatching."""
    out = []
    where = path.relative_to(ROOT)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                out.append(f"{where}:{node.lineno}: reads private attribute .{node.attr}")
        if isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and not (isinstance(t.value, ast.Name) and t.value.id == "self"):
                    out.append(f"{where}:{node.lineno}: assigns {ast.unparse(t)} (monkeypatching)")
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            out += [f"{where}:{node.lineno}: imports private {a.name} from {node.module}"
                    for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr":
            out.append(f"{where}:{node.lineno}: setattr (monkeypatching)")
    return out


def test_benchmarks_use_public_hooks_only() -> None:
    found = [hit for path in source_files("benchmarks") for hit in private_reaches(path, path.read_text())]
    assert found == [], "benchmarks reaching into the code under test:\n" + "\n".join(found)


def test_the_private_check_sees_a_reach() -> None:
    src = "import edge.runner\nedge.runner.driver_class = None\nn = len(e._pending)\nfrom collector.writer import _COLS\n"
    assert len(private_reaches(ROOT / "benchmarks" / "x.py", src)) == 3


def test_drivers_are_not_chosen_by_signature_inspection() -> None:
    hits = [f"{p.relative_to(ROOT)}" for p in source_files(*PACKAGES) if "inspect.signature" in p.read_text()]
    assert hits == []
