"""Imports only point down: no import cycle among the package's modules (counting imports inside
functions), and the bottom modules import nothing above them."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def module_files() -> dict[str, Path]:
    """Module name -> file, ``kernels/`` as ``wsol_fast.kernels`` (as setup.py maps it)."""
    files = {}
    for path in sorted((ROOT / "wsol_fast").rglob("*.py")) + sorted((ROOT / "kernels").glob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "kernels":
            parts = ["wsol_fast", *parts]
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file (its own packages left out:
    importing a submodule always imports them first)."""
    files = module_files()
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in names:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "wsol_fast.data.dali_loader" in graph["wsol_fast.data.loaders"]  # imported inside make_loader
    assert "wsol_fast.commands.common" in graph["wsol_fast.commands.train"]  # a relative module-level import


def test_a_planted_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module, allowed", [
    ("wsol_fast.fields", set()),
    ("wsol_fast.config", {"wsol_fast.fields"}),
    ("wsol_fast.drawing", set()),
    ("wsol_fast.data.images", {"wsol_fast.data.records", "wsol_fast.errors"}),
    ("wsol_fast.errors", set()),
    ("wsol_fast.collectives", set()),
    ("wsol_fast.models.layers", {"wsol_fast.collectives"}),
])
def test_bottom_modules_import_nothing_above_them(module, allowed):
    assert import_graph()[module] <= allowed
