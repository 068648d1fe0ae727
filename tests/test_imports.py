"""The import structure of ``exda``: no import cycles, and the packages import only downwards.

Imports are read with ``ast`` from the source, at the top of a module and inside functions alike (a
function-level import is still a dependency; it only runs later). ``from package import name`` counts
as importing the submodule ``package.name`` where that is a module, else ``package`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import exda

PACKAGE = Path(exda.__file__).resolve().parent
# Each of these may import only those before it: primitives, networks, inference, training, commands.
LAYERS = ("exda.layers", "exda.models", "exda.inference", "exda.engine", "exda.commands")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The exda modules ``module`` imports, anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..y import z
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_import_graph_is_read() -> None:
    assert "exda.models.registry" in GRAPH["exda.models.restormer"]
    assert "exda.inference.restorer" in GRAPH["exda.commands.restore"]


def test_no_import_cycles() -> None:
    """Depth-first search; a back edge is a cycle, reported as the modules along it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                cycles.append(" -> ".join([*path[path.index(imported):], imported]))
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


def test_packages_import_only_downwards() -> None:
    """exda.layers and exda.models never import inference, training or a command; inference never imports
    training; nothing below the commands imports one."""
    wrong = []
    for module, imported in sorted(GRAPH.items()):
        layer = next((p for p in LAYERS if _in(module, p)), None)
        if layer is None:
            above = ("exda.commands",) if module != "exda.cli" else ()
        else:
            above = LAYERS[LAYERS.index(layer) + 1:]
        wrong += [f"{module} imports {name}" for name in sorted(imported) if any(_in(name, p) for p in above)]
    assert wrong == []
