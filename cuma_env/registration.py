"""Registers every catalog task with Gymnasium when `cuma_env` is imported, installed plugins' included.

`gym.make("cuma_env:CuMa-Math-v0")` imports this package by itself (Gymnasium 1.x's module prefix; it has
no plugin entry points), and `gym.register_envs(cuma_env)` is the linter-friendly explicit idiom. Tasks
registered later (`cuma_env.tasks.register`, a `module:Attr` path) are registered with Gymnasium at once.
A broken `cuma.tasks` plugin does not break the import: it is a warning here, and an error where it is named.
"""

from __future__ import annotations

import warnings

from cuma_env.plugins import PluginError
from cuma_env.tasks import TASKS, load_plugins, register
from cuma_env.tasks.registry import GYM_ENTRY_POINT

ENTRY_POINT = GYM_ENTRY_POINT


def register_all() -> None:
    try:
        load_plugins()
    except PluginError as exc:
        warnings.warn(f"cuma_env: a task plugin was not loaded: {exc}", RuntimeWarning, stacklevel=2)
    for task in list(TASKS.values()):
        register(task)  # a no-op for a registered task; registers its Gymnasium id if that was dropped
