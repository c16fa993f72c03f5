"""`LearningProgress`: a non-stationary bandit over levels, rewarded by a label-free learning signal.

In the spirit of self-evolving curricula (SEC: a bandit over problem categories rewarded by the mean absolute
advantage) and of absolute-learning-progress teachers (ALP: reward = how fast a signal changes): each level
keeps a fast and a slow exponential average of a label-free signal of its groups; the level's value is
either the change |fast - slow| (`reward="progress"`, default) or the fast average itself (`reward="value"`,
SEC's choice with `signal="mean_abs_advantage"`). Levels are drawn in proportion to their value, mixed with
`epsilon` of uniform exploration; a level with fewer than `min_visits` groups is treated optimistically.

Caveat (docs/label-free-tiny-world.md, "Before the package"): on hard levels agreement can rise because the
model learns to be consistent, not correct, so progress in agreement there is not progress in accuracy. Use
`AgreementGated` where that matters; this schedule is the bandit baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from curricula.sampler import level_key, parse_level_key
from curricula.schedules.base import Level, Schedule, check_fraction
from curricula.stats import EpisodeStats

SIGNALS = ("agreement", "mean_abs_advantage", "unmasked")
REWARDS = ("progress", "value")


class LearningProgress(Schedule):
    """Bandit over levels.

    Args:
        signal: `agreement` (default), `mean_abs_advantage`, or `unmasked` (1 - masked).
        reward: `progress` (|fast EMA - slow EMA| of the signal; default) or `value` (the fast EMA).
        fast, slow: EMA rates of the two averages (default 0.2 and 0.05: ~5 and ~20 groups of memory).
        epsilon: uniform exploration share (default 0.2, so every level keeps >= 4% of draws at 5 levels).
        min_visits: groups a level needs before its value counts; until then it gets the best value seen
            (default 8: one GRPO batch).
        levels: levels to choose among (default: the source's).
    """

    name = "learning_progress"

    def __init__(self, levels: Sequence[Level] | None = None, *, signal: str = "agreement",
                 reward: str = "progress", fast: float = 0.2, slow: float = 0.05, epsilon: float = 0.2,
                 min_visits: int = 8):
        super().__init__(levels)
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {signal!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.fast, self.slow = check_fraction("fast", fast), check_fraction("slow", slow)
        if not 0 < self.slow < self.fast:
            raise ValueError(f"need 0 < slow < fast, got slow={slow}, fast={fast}")
        self.epsilon = check_fraction("epsilon", epsilon)
        if isinstance(min_visits, bool) or not isinstance(min_visits, int) or min_visits < 0:
            raise ValueError(f"min_visits must be a non-negative int, got {min_visits!r}")
        self.signal, self.reward, self.min_visits = signal, reward, min_visits
        self._stats: dict[Level, list[float]] = {}  # level -> [visits, fast EMA, slow EMA]

    def _signal(self, stats: EpisodeStats) -> float:
        if self.signal == "agreement":
            return stats.agreement
        if self.signal == "mean_abs_advantage":
            return stats.mean_abs_advantage
        return 0.0 if stats.masked else 1.0

    def _update(self, stats: EpisodeStats) -> None:
        if stats.level not in self.levels:
            return
        value = self._signal(stats)
        entry = self._stats.get(stats.level)
        if entry is None:
            self._stats[stats.level] = [1, value, value]
            return
        entry[0] += 1
        entry[1] += self.fast * (value - entry[1])
        entry[2] += self.slow * (value - entry[2])

    def values(self) -> dict[Level, float | None]:
        """Each level's bandit value (None until it has `min_visits` groups)."""
        out: dict[Level, float | None] = {}
        for lv in self.levels:
            entry = self._stats.get(lv)
            if entry is None or entry[0] < max(self.min_visits, 1):
                out[lv] = None
            else:
                out[lv] = abs(entry[1] - entry[2]) if self.reward == "progress" else entry[1]
        return out

    def level_weights(self) -> dict[Level, float]:
        values = self.values()
        known = [v for v in values.values() if v is not None]
        optimistic = max(known) if known else 1.0
        scores = {lv: (optimistic if v is None else v) for lv, v in values.items()}
        total = sum(scores.values())
        k = len(self.levels)
        if total <= 0:
            return {lv: 1.0 / k for lv in self.levels}
        return {lv: (1 - self.epsilon) * s / total + self.epsilon / k for lv, s in scores.items()}

    def _summary(self) -> dict[str, Any]:
        return {"values": {level_key(lv): None if v is None else round(v, 5) for lv, v in self.values().items()},
                "visits": {level_key(lv): int(e[0]) for lv, e in self._stats.items()}}

    def config(self) -> dict[str, Any]:
        return {**self._levels_config(), "signal": self.signal, "reward": self.reward, "fast": self.fast,
                "slow": self.slow, "epsilon": self.epsilon, "min_visits": self.min_visits}

    def _state(self) -> dict[str, Any]:
        return {"stats": {level_key(lv): list(e) for lv, e in self._stats.items()}}

    def _load(self, state: Mapping[str, Any]) -> None:
        self._stats = {parse_level_key(k): [int(e[0]), float(e[1]), float(e[2])] for k, e in state["stats"].items()}
