"""The package's import graph: layers point one way (agents -> curricula -> cuma_env) and nothing is circular.

Read from the source with `ast`, imports inside functions included: a lazy import is still an arrow. Every
arrow counts, a package's own to its submodules too: `agents.rollout` importing `agents.distributed`, whose
`__init__` imports `agents.distributed.ray_rollout`, which imports `agents.rollout`, is a cycle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"cuma_env": 0, "curricula": 1, "agents": 2}  # a module may import its own layer or a lower one


def _modules(root: Path, packages) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The package modules one import statement names: `import a.b` and `from a import b` name `a.b` when it is
    a module, `from a import name` names `a` (a package's `__init__` included)."""
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


def import_graph(root: Path = ROOT, packages=tuple(LAYERS)) -> dict[str, set[str]]:
    """{module: the modules it imports}, every arrow, a package's to its own submodules included."""
    modules = _modules(root, packages)
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = {t for node in ast.walk(tree) for t in _targets(module, path, node, modules)} - {module}
    return graph


GRAPH = import_graph()


def test_the_graph_is_read():
    assert {"cuma_env.episode", "curricula.stream", "agents.trainer"} <= set(GRAPH)
    assert "cuma_env.episode" in GRAPH["cuma_env.torchrl.group_vote"]
    assert "agents.distributed.ray_rollout" in GRAPH["agents.distributed"]  # a package's arrow to its submodule
    assert "agents.rollout" in GRAPH["agents.distributed.ray_rollout"]
    assert "agents.distributed" in GRAPH["agents.trainer"]  # the trainer picks the rollout...
    assert not {m for m in GRAPH["agents.rollout"] if m.startswith("agents.distributed")}  # ...not the rollout


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_arrow_points_up_a_layer(module):
    layer = LAYERS[module.split(".")[0]]
    upward = sorted(t for t in GRAPH[module] if LAYERS[t.split(".")[0]] > layer)
    assert not upward, f"{module} imports {upward}, a higher layer (agents -> curricula -> cuma_env)"


def test_no_import_cycle():
    graphlib.TopologicalSorter(GRAPH).prepare()  # raises CycleError naming the cycle


def test_a_cycle_through_a_package_init_is_found(tmp_path):
    """The shape of the cycle this test once let through: a lazy `from pkg.sub import name` in `pkg.a`, where
    `pkg.sub/__init__` re-exports `pkg.sub.impl`, which imports `pkg.a`."""
    files = {"pkg/__init__.py": "", "pkg/a.py": "def pick():\n    from pkg.sub import Impl\n    return Impl\n",
             "pkg/sub/__init__.py": "from pkg.sub.impl import Impl\n", "pkg/sub/impl.py": "from pkg.a import pick\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.sub"} and graph["pkg.sub"] == {"pkg.sub.impl"}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()
