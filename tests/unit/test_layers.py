"""The house has three floors — ``dags/`` → ``plugins/`` → ``pipelines/`` (+ ``expectations/``) — with
no arrow back up and no circle, counting imports inside functions too (a lazy import hides a
dependency from the reader, not from this test)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("pipelines", "expectations", "plugins", "dags")


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO / "plugins") if path.is_relative_to(REPO / "plugins") else path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def _files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (REPO / r).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_no_arrow_goes_back_up() -> None:
    bad = []
    for path in _files("pipelines", "expectations"):
        for name in _imports(path):
            if _top(name) in ("airflow", "hopchain_airflow", "dags", "hopchain_demo", "tests"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    for path in _files("plugins"):
        for name in _imports(path):
            if _top(name) in ("dags", "hopchain_demo", "tests"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_the_command_line_reaches_the_local_dev_stack() -> None:
    """The release, deployment settings and Airflow side never import ``pipelines.stack``: the
    local stack is a developer tool, and production has none."""
    bad = []
    for path in _files("pipelines", "expectations", "plugins", "dags"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("pipelines/stack/") or path.name == "cli.py":
            continue
        if any(n == "pipelines.stack" or n.startswith("pipelines.stack.") for n in _imports(path)):
            bad.append(rel)
    assert not bad, bad


def test_no_import_circle_among_product_modules() -> None:
    modules = {_module_name(p): p for p in _files(*PRODUCT)}
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    # a module importing its own package's __init__ is the package loading, not a dependency
    graph = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not cycles, cycles
