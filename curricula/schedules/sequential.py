"""`Sequential`: the paper's curriculum, D1 -> D2 -> ... -> D5 in fixed stages (the default schedule)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import Any

from curricula.schedules.base import Level, Schedule, check_fraction, staged_weights
from curricula.stats import EpisodeStats

DEFAULT_STEPS_PER_LEVEL = 200


class Sequential(Schedule):
    """Train on each level for a fixed number of groups, easiest first; never skips, never goes back.

    Args:
        steps_per_level: groups (scored prompts) per level: one int for every level, or one per level.
            Default 200 (the paper does not say; it trains one epoch over bins of unequal size, so pass the
            bin sizes, e.g. `[958, 2152, 2618, 2776, 3494]` for one epoch of the MATH pool). After the last
            stage the schedule stays on the last level (`finished` in the summary).
        replay: share of draws taken from earlier levels (evenly), 0 (default, as in the paper) to < 1.
        levels: the ordered levels (default: the source's, ascending).

    The stage is a pure function of a count, `level(step)`: the prompts served so far when a
    `CurriculumStream` drives the schedule (so batched or asynchronous collection, where draws run ahead of
    the scored groups, still serves exactly `steps_per_level` prompts of each level, in order), or the
    groups heard through `update` when the schedule is used on its own.
    """

    name = "sequential"

    def __init__(self, steps_per_level: int | Sequence[int] = DEFAULT_STEPS_PER_LEVEL, replay: float = 0.0,
                 levels: Sequence[Level] | None = None):
        super().__init__(levels)
        values = [steps_per_level] if isinstance(steps_per_level, int) else list(steps_per_level)
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(f"steps_per_level must be a positive int or a list of them, got {steps_per_level!r}")
        self.steps_per_level = steps_per_level if isinstance(steps_per_level, int) else values
        self.replay = check_fraction("replay", replay, upper_open=True)
        if not isinstance(steps_per_level, int) and levels is not None and len(values) != len(self.levels):
            raise ValueError(f"steps_per_level has {len(values)} entries for {len(self.levels)} levels")

    def _stage_lengths(self) -> list[int]:
        if isinstance(self.steps_per_level, int):
            return [self.steps_per_level] * len(self.levels)
        if len(self.steps_per_level) != len(self.levels):
            raise ValueError(f"steps_per_level has {len(self.steps_per_level)} entries for levels {self.levels}")
        return list(self.steps_per_level)

    def bind(self, levels: Sequence[Level], *, probes: bool = False) -> None:
        super().bind(levels, probes=probes)
        self._stage_lengths()  # a per-level list must match the bound levels: fail now, not mid-run

    def stage(self, step: int | None = None) -> int:
        """Index into `levels` of the stage at `step` (default: the current step count)."""
        step = self.position if step is None else int(step)
        for index, end in enumerate(accumulate(self._stage_lengths())):
            if step < end:
                return index
        return len(self.levels) - 1

    @property
    def position(self) -> int:
        """Prompts served (when bound to a stream) or groups heard (standalone)."""
        return self.draws if self.bound else self.steps

    @property
    def finished(self) -> bool:
        return self.position >= sum(self._stage_lengths())

    def level(self, step: int | None = None) -> Level:
        return self.levels[self.stage(step)]

    def level_weights(self) -> dict[Level, float]:
        return staged_weights(self.levels, self.stage(), self.replay)

    def _update(self, stats: EpisodeStats) -> None:
        pass  # the stage is a function of the step count alone

    def _summary(self) -> dict[str, Any]:
        lengths = self._stage_lengths()
        stage = self.stage()
        done = sum(lengths[:stage])
        return {"stage": stage, "in_stage": self.position - done, "finished": self.finished}

    def config(self) -> dict[str, Any]:
        return {"steps_per_level": self.steps_per_level, "replay": self.replay, **self._levels_config()}

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: Mapping[str, Any]) -> None:
        pass
