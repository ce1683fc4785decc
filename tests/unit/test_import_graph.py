"""The package's import graph, read from the source: no import cycles, no import from a lower layer to a higher
one (docs: DESIGN's layer table), production code importing nothing named ``testing``, and no module over ~500
lines. What is still wrong is listed below, each entry with why; an entry that no longer applies fails the test,
so the lists only shrink.

Every import counts: at module level, inside functions (lazy imports) and under ``if TYPE_CHECKING:`` (a cycle
of types is still a cycle for a reader and for mypy)."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import django_workflow_engine

ROOT = Path(django_workflow_engine.__file__).parent
PACKAGE = "django_workflow_engine"

# core < kernel < models < adapters < hosts, ai < faces. ``conf`` (settings), ``signals`` (Django signals) and
# ``registry`` (the workflow lookup) import nothing above core and are read by every Django layer, so they sit
# with the models; ``errors`` re-exports core's errors.
LAYERS = {
    "core": 0,
    "errors": 0,
    "kernel": 1,
    "models": 2,
    "migrations": 2,
    "conf": 2,
    "signals": 2,
    "registry": 2,
    "adapters": 3,
    "hosts": 4,
    "ai": 4,
    "admin": 5,
    "management": 5,
    "templatetags": 5,
    "facade": 5,
    "apps": 5,
    "checks": 5,
    "testing": 5,
    "tasks": 5,
    "workflows": 5,
    "ops": 4,
}

# Every cycle and upward import of the first review is gone (second round of #20): the lists only shrink.
ALLOWED_CYCLES: set[frozenset[str]] = set()
ALLOWED_UPWARD: set[tuple[str, str]] = set()
MAX_LINES = 500
ALLOWED_LONG: set[str] = set()


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Dotted names an import statement may load: ``from . import x`` may be a module ``x`` or a name in ``.``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    yield prefix
    for alias in node.names:
        yield f"{prefix}.{alias.name}"


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``; a name imported from a module counts as that module."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = list(_imported(module, path, node))
            # ``from .x import y``: y is a submodule if one exists, else a name defined in x.
            found = {n for n in names[1:] if n in modules} if isinstance(node, ast.ImportFrom) else set()
            if not found:
                for name in names if isinstance(node, ast.Import) else names[:1]:
                    while name and name not in modules and "." in name:
                        name = name.rsplit(".", 1)[0]
                    if name in modules:
                        found.add(name)
            targets |= {t for t in found if t != module and t.startswith(PACKAGE + ".")}
        graph[module] = targets
    return graph


def cycles(graph: Mapping[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else LAYERS["facade"]


def upward(graph: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    return {(m, t) for m, targets in graph.items() for t in targets if layer(t) > layer(m)}


def test_the_graph_is_read_from_the_source():
    graph = import_graph()
    assert "django_workflow_engine.kernel.handlers.run_cancel" in graph
    assert "django_workflow_engine.core.context" in graph["django_workflow_engine.ai.helper"]  # ``from ..core...``
    assert "django_workflow_engine.ai.batch" in graph["django_workflow_engine.ai.helper"]  # imported in a method
    assert "django_workflow_engine.kernel.deps" in graph["django_workflow_engine.kernel.annotations"]  # TYPE_CHECKING
    assert "django_workflow_engine.kernel.memory" in graph["django_workflow_engine.testing"]  # ``from ..kernel.x``


def test_cycles_and_upward_arrows_are_found():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == {frozenset({"a.x", "a.y", "a.z"})}
    assert cycles({"a.x": {"a.y"}, "a.y": set()}) == set()
    assert upward({"p.core.a": {"p.kernel.b"}, "p.kernel.b": {"p.core.a"}}) == {("p.core.a", "p.kernel.b")}


def test_no_import_cycles_but_the_listed_ones():
    assert cycles(import_graph()) == ALLOWED_CYCLES


def test_no_layer_imports_a_higher_one_but_the_listed_imports():
    graph = import_graph()
    unknown = {m.split(".")[1] for m in graph if "." in m} - set(LAYERS)
    assert not unknown, f"put these in LAYERS: {sorted(unknown)}"
    assert upward(graph) == ALLOWED_UPWARD


def test_production_code_imports_nothing_named_testing():
    offenders = {
        (m, t)
        for m, targets in import_graph().items()
        for t in targets
        if "testing" in t.split(".")
        and "testing" not in m.split(".")  # the test kit, and the kernel's re-export of its old home
    }
    assert offenders == set()


def test_no_module_is_longer_than_about_500_lines():
    long = {
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if "migrations" not in p.parts and len(p.read_text().splitlines()) > MAX_LINES
    }
    assert long == ALLOWED_LONG


# Strings that look like SQL outside adapters/statements/, each with why it is not a statement the engine runs.
NOT_STATEMENTS = {
    ("checks.py", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"),  # the site's recommended init_command
}
_SQL = re.compile(r"^\s*(SELECT|UPDATE|INSERT|DELETE|WITH|PRAGMA|BEGIN|CREATE|DROP|ALTER|VACUUM)\b")


def test_every_hand_written_statement_is_in_the_statements_package():
    """Every SQL statement the package writes by hand lives in ``adapters/statements/`` (docstrings, which
    describe statements, do not count; an f-string counts by its first literal part)."""
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        if name.startswith(("adapters/statements/", "migrations/")):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                text = node.value
            elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                text = str(node.values[0].value)
            if text and _SQL.match(text):
                found.add((name, text))
    assert found == NOT_STATEMENTS
