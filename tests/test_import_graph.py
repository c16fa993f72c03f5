"""The package's import graph: layers point one way (agents -> curricula -> cuma_env) and nothing is circular.

Read from the source with `ast`, imports inside functions included: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"cuma_env": 0, "curricula": 1, "agents": 2}  # a module may import its own layer or a lower one


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The package modules one import statement names (`from pkg import submodule` names the submodule)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in modules}
    if not isinstance(node, ast.ImportFrom):
        return set()
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    submodules = {f"{target}.{a.name}" for a in node.names} & set(modules)
    if len(submodules) == len(node.names):
        return submodules
    return submodules | ({target} & set(modules))


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = {t for node in ast.walk(tree) for t in _targets(module, path, node, modules)} - {module}
    return graph


GRAPH = _graph()


def test_the_graph_is_read():
    assert {"cuma_env.episode", "curricula.stream", "agents.trainer"} <= set(GRAPH)
    assert "cuma_env.episode" in GRAPH["cuma_env.torchrl.group_vote"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_arrow_points_up_a_layer(module):
    layer = LAYERS[module.split(".")[0]]
    upward = sorted(t for t in GRAPH[module] if LAYERS[t.split(".")[0]] > layer)
    assert not upward, f"{module} imports {upward}, a higher layer (agents -> curricula -> cuma_env)"


def test_no_import_cycle():
    # a package imports its own submodules to re-export them: those arrows are not the cycles that matter
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in GRAPH.items()}
    graphlib.TopologicalSorter(edges).prepare()  # raises CycleError naming the cycle
