"""Registers every catalog task with Gymnasium when `cuma_env` is imported.

`gym.make("cuma_env:CuMa-Math-v0")` imports this package by itself (Gymnasium 1.x's module prefix; it has
no plugin entry points), and `gym.register_envs(cuma_env)` is the linter-friendly explicit idiom.
"""

from __future__ import annotations

import gymnasium as gym

from cuma_env.catalog import TASKS

ENTRY_POINT = "cuma_env.gym_env:CuMaEnv"


def register_all() -> None:
    for env_id in TASKS:
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=ENTRY_POINT, kwargs={"task": env_id},
                         disable_env_checker=False)
