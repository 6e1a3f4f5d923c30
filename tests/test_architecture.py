"""The package's shape: the import-linter layers contract, no import cycles, small modules and functions.

The layers are declared once, in pyproject.toml ([tool.importlinter]); docs/ARCHITECTURE.md explains them.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cmlearn"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 80


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """Run the venv's lint-imports on cwd/pyproject.toml, importing cmlearn from ``pythonpath`` (no cache)."""
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} missing: install the dev extras (pip install -e '.[dev]')"
    env = dict(os.environ, PYTHONPATH=str(pythonpath), NO_COLOR="1", COLUMNS="200")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "pyproject.toml"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    res = _lint_imports(ROOT, ROOT)
    out = res.stdout + res.stderr
    print(out)
    assert "Contracts: 1 kept, 0 broken." in out, out
    assert res.returncode == 0, out


def test_layers_contract_catches_an_upward_import(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "cmlearn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    schedules = tmp_path / "cmlearn" / "core" / "schedules.py"
    schedules.write_text(schedules.read_text() + "\nimport cmlearn.course.plotting  # noqa: E402, F401\n")
    res = _lint_imports(tmp_path, tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "BROKEN" in out and "cmlearn.core is not allowed to import cmlearn.course" in out, out
    assert "cmlearn.core.schedules -> cmlearn.course.plotting" in out, out


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's strongly connected components of the module import graph (iteratively, no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                components.append(sorted(comp))
    return components


def test_strongly_connected_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d"), ("p.d", "p.e")]:
        graph.add_import(importer=a, imported=b)
    assert sorted(c for c in _strongly_connected(graph) if len(c) > 1) == [["p.a", "p.b", "p.c"]]


def test_no_import_cycles():
    """No module can reach itself through imports, counting imports inside functions (grimp's default)."""
    graph = grimp.build_graph("cmlearn", cache_dir=None)
    assert "cmlearn.core.schedules" in graph.modules
    cycles = []
    for comp in _strongly_connected(graph):
        if len(comp) > 1:
            a, b = comp[0], sorted(graph.find_modules_directly_imported_by(comp[0]) & set(comp))[0]
            path = graph.find_shortest_chain(importer=b, imported=a)
            cycles.append(f"{len(comp)} modules {comp}, e.g. {a} -> {' -> '.join(path)}")
    cycles += [f"{m} imports itself" for m in graph.modules if m in graph.find_modules_directly_imported_by(m)]
    print("\n".join(cycles))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_and_functions_are_small():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel, text = path.relative_to(ROOT), path.read_text()
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            offenders.append(f"{rel}: {n} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(f"{rel}:{node.lineno} {node.name}(): {length} lines (max {MAX_FUNCTION_LINES})")
    print("\n".join(offenders))
    assert not offenders, "too long:\n" + "\n".join(offenders)
