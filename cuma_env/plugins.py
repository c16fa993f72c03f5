"""Objects named by the user: `module:Attr` import paths and installed plugins' entry points.

    load_object("my_sched:FirstTwo", what="schedule")        # imports my_sched, returns FirstTwo
    load_plugin("first_two", "cuma.schedules", what="schedule", expected="a Schedule subclass")
    entry_point_objects("cuma.schedules")                     # {name: loaded object} of installed plugins

Anywhere the package accepts a registered name (a schedule, a reward, a task), `module:Attr` is accepted too,
and installed distributions add names through `importlib.metadata` entry points in the groups `cuma.schedules`,
`cuma.rewards` and `cuma.tasks` (as pytest and gymnasium plugins do). A bad path is one `PluginError` line
naming the module, the attribute and what was expected. Only the caller knows what fits (a `Schedule` subclass,
a reward): this module imports and reports, the registries (`curricula.schedules.registry`,
`cuma_env.rewards`) check the type.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

__all__ = ["ENTRY_POINT_GROUPS", "PluginError", "entry_point_objects", "is_import_path", "load_object", "load_plugin",
           "plugin_names"]

ENTRY_POINT_GROUPS = ("cuma.schedules", "cuma.rewards", "cuma.tasks")


class PluginError(ValueError):
    """A `module:Attr` path or an entry point that does not give what was expected."""


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def is_import_path(name: Any) -> bool:
    """`module:Attr` (one colon, both sides non-empty): a user's object rather than a registered name."""
    if not isinstance(name, str) or name.count(":") != 1:
        return False
    module, attr = name.split(":")
    return bool(module.strip()) and bool(attr.strip())


def _missing_module(exc: ModuleNotFoundError, module_name: str) -> bool:
    """The module itself (or a package above it) is absent, rather than something the module imports."""
    missing = exc.name or ""
    return bool(missing) and (module_name == missing or module_name.startswith(missing + "."))


def load_object(path: str, *, what: str = "object", expected: str | None = None) -> Any:
    """Import `module:Attr` (the attribute may be dotted: `pkg.mod:Class.factory`).

    Every failure is one `PluginError` line: the module is not importable, importing it raised, or it lacks
    the attribute. `expected` ("a Schedule subclass") goes into the message; the default is "a <what>".
    """
    expected = expected or f"a {what}"
    if not is_import_path(path):
        raise PluginError(f"{what} {path!r}: expected an import path 'module:Attr'")
    module_name, attr = (part.strip() for part in path.split(":"))
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _missing_module(exc, module_name):
            raise PluginError(f"{what} {path!r}: importing module {module_name!r} failed: {_one_line(exc)}") from None
        raise PluginError(f"{what} {path!r}: cannot import module {module_name!r} (no module named {exc.name!r}); "
                          "is its folder on PYTHONPATH, or is it installed?") from None
    except Exception as exc:  # noqa: BLE001 - a user's module may raise anything while it is imported
        raise PluginError(f"{what} {path!r}: importing module {module_name!r} failed: {_one_line(exc)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r} "
                              f"(expected {expected})")
        obj = getattr(obj, part)
    return obj


def _load_entry(entry: metadata.EntryPoint, group: str) -> Any:
    try:
        return entry.load()
    except Exception as exc:  # noqa: BLE001 - any failure of a third party's import is reported the same way
        raise PluginError(f"entry point {entry.name!r} in group {group!r} ({entry.value}) failed to load: "
                          f"{_one_line(exc)}") from None


def plugin_names(group: str) -> list[str]:
    """The names installed distributions register in `group` (nothing is imported), sorted."""
    return sorted({entry.name for entry in metadata.entry_points(group=group)})


def load_plugin(name: str, group: str, *, what: str, expected: str | None = None) -> Any | None:
    """The object a user named instead of a built-in: a `module:Attr` path, or the name of an installed entry
    point of `group` (only that one is imported). None when `name` is neither, so the caller can list choices."""
    if is_import_path(name):
        return load_object(name, what=what, expected=expected)
    for entry in metadata.entry_points(group=group):
        if entry.name == name:
            return _load_entry(entry, group)
    return None


def entry_point_objects(group: str) -> dict[str, Any]:
    """Installed plugins of `group`: {entry point name: loaded object}; a broken plugin is a `PluginError`."""
    return {entry.name: _load_entry(entry, group) for entry in metadata.entry_points(group=group)}
