"""The two schedules without dynamics: `Uniform` (all levels mixed: the TTRL baseline) and `Fixed(level)`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from curricula.schedules.base import Level, Schedule
from curricula.stats import EpisodeStats


class Uniform(Schedule):
    """Every level at once, evenly (or with fixed `weights`, one per level): TTRL's fixed-difficulty mix.

    Args:
        levels: levels to mix (default: all the source serves).
        weights: optional non-negative weights aligned with `levels` (normalised); default equal.
    """

    name = "uniform"

    def __init__(self, levels: Sequence[Level] | None = None, weights: Sequence[float] | None = None):
        super().__init__(levels)
        if weights is not None:
            weights = [float(w) for w in weights]
            if levels is None or len(weights) != len(levels):
                raise ValueError("uniform: weights need explicit levels of the same length")
            if any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"uniform: weights must be non-negative with a positive sum, got {weights}")
        self.weights = weights

    def level_weights(self) -> dict[Level, float]:
        if self.weights is None:
            return {lv: 1.0 / len(self.levels) for lv in self.levels}
        total = sum(self.weights)
        return {lv: w / total for lv, w in zip(self.levels, self.weights)}

    def _update(self, stats: EpisodeStats) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {**self._levels_config(), **({"weights": list(self.weights)} if self.weights else {})}

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: Mapping[str, Any]) -> None:
        pass


class Fixed(Schedule):
    """One level, always (e.g. `fixed(level=1)` for a level-1-only run)."""

    name = "fixed"

    def __init__(self, level: Level = 1):
        super().__init__([level])
        self.fixed_level = None if level is None else int(level)

    def level_weights(self) -> dict[Level, float]:
        return {self.fixed_level: 1.0}

    def _update(self, stats: EpisodeStats) -> None:
        pass

    def config(self) -> dict[str, Any]:
        return {"level": self.fixed_level}

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: Mapping[str, Any]) -> None:
        pass
