"""Procedural arithmetic in five levels (`cuma_env.arithmetic`): needs no data files, and has a validation
split held out for tuning besides train and test. The compact template keeps a tiny model's prompts short."""

from __future__ import annotations

from collections.abc import Sequence

from cuma_env.arithmetic import ArithmeticSource
from cuma_env.problems import LEVELS
from cuma_env.tasks.spec import Task


def arith_source(split: str, seed: int, levels: Sequence[int] | None) -> ArithmeticSource:
    return ArithmeticSource(split=split, seed=seed, levels=tuple(levels) if levels else LEVELS)


TASK = Task("CuMa-Arith-v0", "procedural arithmetic in five levels; needs no data files",
            {"train": None, "validation": None, "test": None}, template="compact", bench="arith",
            procedural=arith_source)
