"""The import rules of the house, read from the code: layers, no circles, one import name.

Data flows one way: spec → discover → checks → machineconfig → Plan → render | execute, with the
command line on top. These tests parse every module of the package (nothing is imported or run)
and hold the imports against the layers written below; README.md ("For contributors") explains
them. A module-level import and an import inside a function count the same: a circle closed by a
function-local import is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("planner", "providers", "lab", "schemas")
GENERATED = "omniport.providers.wire"

# Each layer (a module-name prefix; the longest matching prefix decides) and the prefixes of the
# omniport modules it may import. Anything not listed here is refused.
LAYERS: dict[str, tuple[str, ...]] = {
    "omniport.schemas": (),
    GENERATED: (GENERATED,),
    # talks to Talos, Omni and the Image Factory; knows nothing of plans
    "omniport.providers": ("omniport.providers",),
    "omniport.planner.errors": (),
    # the pure config engine, shared by the planner and the lab
    "omniport.planner.machineconfig": ("omniport.planner.machineconfig", "omniport.planner.errors"),
    # the lab is a stand-in for the real systems: it may share the wire and the config engine,
    # never the planner's decisions
    "omniport.lab": (
        "omniport.lab",
        "omniport.providers",
        "omniport.planner.machineconfig",
        "omniport.planner.errors",
    ),
    # the plan stage: reads the world through providers, decides, writes a Plan
    "omniport.planner": ("omniport.planner", "omniport.providers", "omniport.schemas"),
    # execution consumes a Plan; it never reaches up into the command line
    "omniport.planner.execute": ("omniport.planner", "omniport.providers", "omniport.schemas"),
    # the command line parses and delegates; it alone starts labs (lab and demo commands)
    "omniport.planner.cli": (
        "omniport.planner",
        "omniport.providers",
        "omniport.schemas",
        "omniport.lab",
    ),
}

# Stages below the command line never import it, and the plan stage never imports execution.
NEVER: tuple[tuple[str, str], ...] = (
    ("omniport.planner", "omniport.planner.cli"),
    ("omniport.planner.execute", "omniport.planner.cli"),
    ("omniport.planner", "omniport.planner.execute"),
    # peers on the session kernel: rollback, abort and unlock never import apply
    ("omniport.planner.execute.rollback", "omniport.planner.execute.apply"),
    ("omniport.planner.execute.abort", "omniport.planner.execute.apply"),
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the omniport module imported (the longest existing prefix of the name)
    line: int
    local: bool  # inside a function
    function_line: int = 0  # where the enclosing function starts (0: module level)


def _modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found["omniport." + ".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports() -> Iterator[Import]:
    for module, path in sorted(MODULES.items()):
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        yield from _walk(tree, module, package, function_line=0)


def _walk(node: ast.AST, module: str, package: str, function_line: int) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        inside = function_line
        if not inside and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside = child.lineno
        names: list[str] = []
        if isinstance(child, ast.Import):
            names = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                anchor = package
                for _ in range(child.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in child.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                yield Import(module, target, child.lineno, bool(inside), inside)
        yield from _walk(child, module, package, inside)


IMPORTS = list(_imports())


def _layer(module: str) -> str:
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_every_module_has_a_layer():
    assert MODULES, "no modules found"
    for module in MODULES:
        assert _layer(module), module


def test_no_module_imports_the_folders_by_their_bare_names():
    """Everything is imported as omniport.<folder>: bare `planner` would be another project's."""
    bare = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            bare += [f"{module}: {n}" for n in names if n.split(".")[0] in FOLDERS]
    assert bare == []


def test_each_layer_imports_only_what_it_may():
    wrong = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in IMPORTS
        if not any(_within(i.target, allowed) for allowed in LAYERS[_layer(i.source)])
    ]
    assert wrong == []


@pytest.mark.parametrize(("source", "target"), NEVER, ids=[f"{s}->{t}" for s, t in NEVER])
def test_never(source: str, target: str):
    taken = [
        f"{i.source}:{i.line} imports {i.target}"
        for i in IMPORTS
        if _within(i.source, source)
        # a rule on a layer holds for that layer's own modules, not for the layers inside it
        and (source not in LAYERS or _layer(i.source) == source)
        and _within(i.target, target)
        and not _within(i.source, target)  # a layer may import itself
    ]
    assert taken == []


def test_function_local_imports_say_why():
    """An import inside a function hides an arrow from readers; each one says why it is there
    (``# imported here: <reason>``, between the function's start and the import)."""
    silent = []
    for i in IMPORTS:
        if not i.local:
            continue
        lines = MODULES[i.source].read_text().splitlines()[i.function_line - 1 : i.line]
        if not any("# imported here:" in line for line in lines):
            silent.append(f"{i.source}:{i.line} imports {i.target}")
    assert silent == []


def test_no_circles():
    """No module reaches itself through imports, module-level or function-local."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for i in IMPORTS:
        graph[i.source].add(i.target)
    circles = _strongly_connected(graph)
    assert circles == [], "\n".join(" <-> ".join(sorted(c)) for c in circles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components of two or more modules are returned."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_rules_can_fail():
    """The checker sees a circle and a wrong-way import when there is one."""
    assert _strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()}) == [["b", "a"]]
    assert not any(_within("omniport.lab.x", p) for p in LAYERS["omniport.providers"])
    assert _layer("omniport.planner.machineconfig.merge") == "omniport.planner.machineconfig"
