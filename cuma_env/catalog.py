"""The task catalog: which problem source and prompt template each environment id uses.

Both faces (Gymnasium, TorchRL) build their source through `make_source`, so an id means the same
problems everywhere. The tasks themselves live one module each in `cuma_env.tasks` (plus installed plugins'
and `module:Attr` paths); `TASKS` is that registry. Splits are `train` (what a policy trains on) and `test`
(held out); the procedural `CuMa-Arith-v0` also has `validation` (held out, for tuning: `cuma_env.arithmetic`).
A task without a split refuses it in one line (`make_source`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from cuma_env.datasets import load_source
from cuma_env.problems import LEVELS, ProblemSource
from cuma_env.tasks import SPLITS, TASKS, Dataset, Task, get_task
from cuma_env.tasks.arith import arith_source


def make_source(env_id: str, split: str = "train", levels: Sequence[int] | None = None,
                data_dir: str | os.PathLike | None = None, seed: int = 0) -> ProblemSource:
    """The problem source behind an environment id (or a task's `module:Attr` path) and split, restricted to
    `levels` if given."""
    task = get_task(env_id)
    if split not in task.datasets:
        raise ValueError(f"{env_id} has splits {sorted(task.datasets)}, not {split!r}")
    if levels is not None:
        levels = tuple(levels)
        if not task.levelled:
            raise ValueError(f"{env_id} has no difficulty levels; leave levels=None")
        bad = [lv for lv in levels if lv not in LEVELS]
        if bad or not levels:
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
    dataset = task.datasets[split]
    if dataset is None:
        return (task.procedural or arith_source)(split, seed, levels)
    return load_source(dataset, data_dir=data_dir, levels=levels)


__all__ = ["SPLITS", "TASKS", "Dataset", "Task", "get_task", "make_source"]
