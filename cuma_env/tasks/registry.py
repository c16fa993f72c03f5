"""The one table of tasks: the catalog, `gym.make`, `cuma eval --bench`, curation's never-copy sets and the data
errors all read it.

A task joins it by `register(TASK)`, by being named through a `module:Attr` path (`get_task("my_task:TASK")`),
or through an installed distribution's entry point in the group `cuma.tasks` (loaded when `cuma_env` is
imported, and again when a name is not found). Registering also registers the env id with Gymnasium, so
`gym.make(env_id)` works at once. Registering the same task twice is a no-op; another task under a taken env
id, bench or dataset name is one `PluginError` line.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from cuma_env.plugins import PluginError, entry_point_objects, is_import_path, load_object
from cuma_env.tasks.spec import Dataset, Task, check_dataset, check_task

ENTRY_POINT_GROUP = "cuma.tasks"
GYM_ENTRY_POINT = "cuma_env.gym_env:CuMaEnv"

TASKS: dict[str, Task] = {}         # env id -> task, in registration order (the built-ins first)
DATASETS: dict[str, Dataset] = {}   # dataset name -> its file and reader, for every registered task's files
_plugins = {"loaded": False}


def register(task: Task | str, *, where: str = "register", origin: str | None = None) -> Task:
    """Add `task` (or the task at a `module:Attr` path) to the table and to Gymnasium's registry.

    `origin`: the import path it came from, which Gymnasium keeps so a fresh process (a vector env's worker)
    imports it again."""
    if isinstance(task, str):
        return get_task(task)
    try:
        check_task(task, where)
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    current = TASKS.get(task.env_id)
    if current is not None:
        if current == task:
            _register_gym(current, where, origin)  # back in Gymnasium's registry if something removed it
            return current
        raise PluginError(f"{where}: env id {task.env_id} is already registered ({current.description}); "
                          "give your task another env_id")
    taken = next((t for t in TASKS.values() if task.bench is not None and t.bench == task.bench), None)
    if taken is not None:
        raise PluginError(f"{where}: bench {task.bench!r} is already {taken.env_id}'s; give your task another bench")
    new = _new_datasets(task, where)
    _register_gym(task, where, origin)
    DATASETS.update(new)
    TASKS[task.env_id] = task
    return task


def _new_datasets(task: Task, where: str) -> dict[str, Dataset]:
    new: dict[str, Dataset] = {}
    for data in task.datasets.values():
        if isinstance(data, Dataset):
            check_dataset(data, where)
            known = DATASETS.get(data.name, new.get(data.name))
            if known is not None and known != data:
                raise PluginError(f"{where}: task {task.env_id}: dataset name {data.name!r} is taken by another "
                                  f"dataset ({known.path}); give yours another name")
            new[data.name] = data
    for split, data in task.datasets.items():
        if isinstance(data, str) and data not in DATASETS and data not in new:
            raise PluginError(f"{where}: task {task.env_id}: split {split!r} names no registered dataset {data!r}; "
                              "give a Dataset instead")
    return new


def _register_gym(task: Task, where: str, origin: str | None) -> None:
    import gymnasium as gym

    if task.env_id in gym.registry:
        return
    try:
        gym.register(id=task.env_id, entry_point=GYM_ENTRY_POINT, kwargs={"task": origin or task.env_id},
                     disable_env_checker=False)
    except gym.error.Error as exc:
        raise PluginError(f"{where}: env id {task.env_id!r} is not a Gymnasium id ({exc})") from None


def unregister(env_id: str) -> None:
    """Remove a task, its datasets no other task reads, and its Gymnasium id (a notebook that redefines one)."""
    import gymnasium as gym

    task = TASKS.pop(env_id)
    used = {d if isinstance(d, str) else d.name for t in TASKS.values() for d in t.datasets.values() if d}
    for data in task.datasets.values():
        name = data.name if isinstance(data, Dataset) else data
        if name and name not in used:
            DATASETS.pop(name, None)
    gym.registry.pop(env_id, None)


def load_plugins(*, refresh: bool = False) -> list[Task]:
    """Register the tasks of installed distributions' `cuma.tasks` entry points (once; `refresh`: look again)."""
    if _plugins["loaded"] and not refresh:
        return []
    _plugins["loaded"] = True
    return [register(obj, where=f"entry point {name!r} in group {ENTRY_POINT_GROUP!r}")
            for name, obj in entry_point_objects(ENTRY_POINT_GROUP).items()]


def all_tasks() -> dict[str, Task]:
    """Every task: the built-ins, installed plugins', and those registered in this process."""
    load_plugins()
    return dict(TASKS)


def get_task(name: str) -> Task:
    """The task of an env id (`CuMa-Math-v0`, Gymnasium's `cuma_env:CuMa-Math-v0`) or of a `module:Attr` path."""
    if not isinstance(name, str):
        raise ValueError(f"a task is named by its env id or a module:Attr path, got {type(name).__name__}")
    if name in TASKS:
        return TASKS[name]
    if is_import_path(name):
        return _task_at(name)
    load_plugins(refresh=True)
    if name in TASKS:
        return TASKS[name]
    raise ValueError(f"unknown CuMa environment {name!r}; known: {', '.join(TASKS)} (or a module:Attr path to a "
                     "cuma_env.tasks.Task)")


def _task_at(path: str) -> Task:
    """`module:EnvId` (Gymnasium's form: import the module, which registers its tasks) or `module:Attr`."""
    module, attr = (part.strip() for part in path.split(":"))
    if attr in TASKS and module in sys.modules:
        return TASKS[attr]
    try:
        obj: Any = load_object(path, what="task", expected="a cuma_env.tasks.Task")
    except PluginError:
        if _imports(module) and attr in TASKS:  # the module registered `attr` when imported
            return TASKS[attr]
        raise
    return register(obj, where=f"task {path!r}", origin=path)


def _imports(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def find_bench(name: str) -> Task:
    """The task `cuma eval --bench NAME` evaluates: the one whose `bench` is NAME, or the task at a path."""
    if is_import_path(name):
        task = get_task(name)
        if task.bench is None:
            raise ValueError(f"task {name} ({task.env_id}) names no bench; set bench= in its Task")
        return task
    for refresh in (False, True):
        load_plugins(refresh=refresh)
        found = next((t for t in TASKS.values() if t.bench == name), None)
        if found is not None:
            return found
    raise ValueError(f"unknown bench {name!r}; choose one of {', '.join(bench_names())} or give the module:Attr "
                     "path of a cuma_env.tasks.Task")


def bench_names() -> tuple[str, ...]:
    return tuple(t.bench for t in all_tasks().values() if t.bench is not None)


def get_dataset(name: str | Dataset) -> Dataset:
    """A dataset by name (or the `Dataset` itself): what `cuma_env.load_problems(name)` reads."""
    if isinstance(name, Dataset):
        return name
    if name not in DATASETS:
        load_plugins(refresh=True)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_name(data: Dataset | str) -> str:
    return data.name if isinstance(data, Dataset) else data


def data_folders() -> list[str]:
    """The data folder's subdirectories the registered tasks read (`math/`, `gsm8k/`, ...), for error messages."""
    return list(dict.fromkeys(d.folder for d in DATASETS.values() if d.folder))


def eval_datasets() -> list[str]:
    """The datasets every file-backed bench evaluates: what generated training problems must never copy."""
    return list(dict.fromkeys(dataset_name(t.datasets[t.bench_split]) for t in all_tasks().values()
                              if t.bench is not None and t.datasets.get(t.bench_split) is not None))


__all__ = ["DATASETS", "ENTRY_POINT_GROUP", "GYM_ENTRY_POINT", "TASKS", "all_tasks", "bench_names", "data_folders",
           "dataset_name", "eval_datasets", "find_bench", "get_dataset", "get_task", "load_plugins", "register",
           "unregister"]
