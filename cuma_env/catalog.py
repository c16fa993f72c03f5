"""The task catalog: which problem source and prompt template each environment id uses.

Both faces (Gymnasium, TorchRL) build their source through `make_source`, so an id means the same
problems everywhere. Splits are `train` (what a policy trains on) and `test` (held out); the procedural
`CuMa-Arith-v0` also has `validation` (held out, for tuning: `cuma_env.arithmetic`). A task without a split
refuses it in one line (`make_source`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from cuma_env.arithmetic import ArithmeticSource
from cuma_env.datasets import load_source
from cuma_env.problems import LEVELS, ProblemSource

SPLITS = ("train", "validation", "test")  # every split some task has; each task lists its own in `datasets`


@dataclass(frozen=True)
class Task:
    env_id: str
    description: str
    datasets: dict[str, str | None]  # split -> dataset name in cuma_env.datasets (None: procedural)
    template: str = "default"
    levelled: bool = True
    bench: str | None = None  # its `cuma eval --bench` name (agents.evaluation); None: not a bench
    bench_split: str = "test"  # the split that bench evaluates


TASKS: dict[str, Task] = {t.env_id: t for t in (
    Task("CuMa-Math-v0", "MATH: the 12k PRM800K training pool by level; test split = MATH-500",
         {"train": "math", "test": "math500"}, bench="math500"),
    Task("CuMa-GSM8K-v0", "GSM8K grade-school word problems (no levels)",
         {"train": "gsm8k_train", "test": "gsm8k_test"}, levelled=False, bench="gsm8k"),
    Task("CuMa-Arith-v0", "procedural arithmetic in five levels; needs no data files",
         {"train": None, "validation": None, "test": None}, template="compact", bench="arith"),
    Task("CuMa-AIME24-v0", "AIME 2024 (30 problems, evaluation only)", {"test": "aime24"}, levelled=False,
         bench="aime24"),
    Task("CuMa-AMC23-v0", "AMC 2023 (40 problems, evaluation only)", {"test": "amc23"}, levelled=False,
         bench="amc23"),
)}


def make_source(env_id: str, split: str = "train", levels: Sequence[int] | None = None,
                data_dir: str | os.PathLike | None = None, seed: int = 0) -> ProblemSource:
    """The problem source behind an environment id and split, restricted to `levels` if given."""
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
        return ArithmeticSource(split=split, seed=seed, levels=levels or LEVELS)
    return load_source(dataset, data_dir=data_dir, levels=levels)


def get_task(env_id: str) -> Task:
    name = env_id.split(":", 1)[-1]
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown CuMa environment {env_id!r}; known: {', '.join(TASKS)}") from None
