"""The shape of `src/`, read from its source: no import cycle, no production import of the node simulator,
and an explicit public surface (`__all__`) on every public module.

Imports are read with `ast`, not executed. A cycle counts only module-level imports (those that run
when the module is imported): imports inside functions and under `if TYPE_CHECKING:` do not.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "atoma_proxy"
# What runs in a deployment; the CLI and the demo may start the simulator (the embedded default nodes).
PRODUCTION = ("core", "facade", "clients", "wire", "confidential", "sui")
SIMULATOR = f"{PACKAGE}.nodesim"
# Alembic's scripts: loaded by path, never imported.
NOT_MODULES = ("core/persistence/migrations",)


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {
    _module_name(path): path
    for path in sorted(SRC.rglob("*.py"))
    if "node_modules" not in path.parts and not path.relative_to(SRC).as_posix().startswith(NOT_MODULES)
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements that run on import: into `if`, `try` and `with` blocks, not into functions or classes."""
    for node in body:
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        else:
            yield node


def _source(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module a `from ... import` reads from."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _imported(module: str, node: ast.stmt) -> set[str]:
    """The modules of `src/` that an import statement names (`from x import y`: x.y when y is a submodule)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in MODULES}
    if not isinstance(node, ast.ImportFrom):
        return set()
    source = _source(module, node)
    return {
        f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
        for alias in node.names
        if f"{source}.{alias.name}" in MODULES or source in MODULES
    }


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of `src/` it imports when it is imported."""
    return {
        module: {target for node in _module_level(_tree(module).body) for target in _imported(module, node)} - {module}
        for module in MODULES
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while (top := stack.pop()) != module:
                component.append(top)
            if component:
                components.append(_one_cycle(graph, {module, *component}, module))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return components


def _one_cycle(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest path from `start` back to itself inside one strongly connected component."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module] & members):
                if target == start:
                    return [*paths[module], start]
                if target not in paths:
                    paths[target] = [*paths[module], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle")


def test_no_import_cycle_in_src() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_graph_sees_module_level_imports_only() -> None:
    """The reader itself: `from x import y` of a submodule counts; TYPE_CHECKING and function bodies do not."""
    graph = import_graph()
    assert f"{PACKAGE}.sim_words" in graph[f"{PACKAGE}.core.ledger.token_counting"]  # from atoma_proxy import sim_words
    assert f"{PACKAGE}.core.inference" not in graph[f"{PACKAGE}.core.telemetry.requests"]  # under TYPE_CHECKING
    assert f"{PACKAGE}.nodesim.server" not in graph[f"{PACKAGE}.cli"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]


def _imports_simulator(module: str, node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        source = _source(module, node)
        names = [source, *(f"{source}.{alias.name}" for alias in node.names)]
    else:
        return False
    return any(name == SIMULATOR or name.startswith(f"{SIMULATOR}.") for name in names)


def test_production_code_never_imports_the_node_simulator() -> None:
    """Not even inside a function: a deployment must not depend on the simulator."""
    offenders = [
        str(path.relative_to(SRC))
        for module, path in MODULES.items()
        if module.partition(".")[2].split(".")[0] in PRODUCTION
        and any(_imports_simulator(module, node) for node in ast.walk(_tree(module)))
    ]
    assert not offenders, "production modules that import the node simulator:\n" + "\n".join(offenders)


def _defines_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
            return True
    return False


def test_every_public_module_declares_its_public_names() -> None:
    """Public modules (no leading underscore in their name) say what they export with `__all__`."""
    missing = [
        str(path.relative_to(SRC))
        for module, path in MODULES.items()
        if not path.name.startswith("_") and not _defines_all(_tree(module))
    ]
    assert not missing, "modules without __all__:\n" + "\n".join(missing)
