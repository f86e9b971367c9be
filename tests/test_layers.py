"""Imports run one way: from the commands and routes down to the stores and the wire types.

A cycle between modules, or a component importing a command or a route, makes a change in
one place break another that looked unrelated; this test names the import that does it.
Imports under ``if TYPE_CHECKING:`` are annotations, not dependencies, and are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ownlight"

# The top layer: what a user runs or calls. Nothing below may import it.
TOP = ("ownlight.cli", "ownlight.cli_support", "ownlight.server", "ownlight.runtime",
       "ownlight.api", "ownlight.console")
# Package pairs where the first sits below the second: never the reverse.
BELOW = [
    ("ownlight.models", "ownlight.backends"),   # model files and the registry under serving
    ("ownlight.store", "ownlight.auth"),        # the state store under the key store
    ("ownlight.protocol", "ownlight.backends"),
    ("ownlight.config", "ownlight.backends"),
    ("ownlight.backends", "ownlight.pipeline"),
    ("ownlight.stages", "ownlight.pipeline"),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("ownlight", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


MODULES = _modules()


def _is_top(module: str) -> bool:
    return module.endswith("_cli") or any(
        module == top or module.startswith(top + ".") for top in TOP)


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    typing_only = {id(node) for branch in ast.walk(tree)
                   if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
                   for node in ast.walk(branch)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                package = module if MODULES[module].name == "__init__.py" else \
                    module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names = [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.update(t for n in names if n.startswith("ownlight")
                   if (t := _resolve(n)) and t != module)
    return out


GRAPH = {module: _imports(module) for module in MODULES}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_module_imports_a_command_or_a_route() -> None:
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() if not _is_top(m)
              for t in targets if _is_top(t)]
    assert not upward, "components importing the top layer:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize(("lower", "upper"), BELOW)
def test_lower_packages_never_import_upper_ones(lower: str, upper: str) -> None:
    back = [f"{m} -> {t}" for m, targets in GRAPH.items() if _in(m, lower) and not _is_top(m)
            for t in targets if _in(t, upper)]
    assert not back, f"{lower} sits below {upper}, yet:\n" + "\n".join(sorted(back))


def test_there_is_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_imports() -> None:
    """The graph is not empty by mistake: known arrows are in it."""
    assert "ownlight.config.loading" in GRAPH["ownlight.config"]
    assert "ownlight.backends.base" in GRAPH["ownlight.backends.managed"]
    assert "ownlight.api.bodies" in GRAPH["ownlight.api.admin_routes"]  # a relative import
    assert _is_top("ownlight.models.models_cli") and not _is_top("ownlight.models.registry")
