"""Paired percentile bootstrap intervals for the difference in held-out accuracy between two arms (pure numpy):
the study's first method, now reported beside the t-intervals of intervals.py, which replaced it (issue 27).

The metric is `cuma reproduce`'s: greedy pass@1 per level, averaged over the levels, so every level weighs
the same whatever its problem count (26 level-1 test problems against 400 of level 3). Problems are therefore
resampled *within* their level. An arm's results in one world are a matrix `correct[seed, problem]`; two arms
are compared on the same problems and the same seeds (paired: one draw of seeds and problems serves both).

    paired_bootstrap_interval(a, b, levels)          # one world: resample seeds, then problems within levels
    pooled_bootstrap_interval([(a1, b1, lv1), ...])  # resample worlds, then within each world

A percentile interval with a fixed RNG seed: the same data always give the same interval. Why it was
replaced (measured in interval_coverage.py): resampling 3 seeds shrinks their variance by 2/3 and reads
normal quantiles where t with 2 df is needed; resampling k worlds shrinks the between-world variance by
(k - 1) / k, again with normal quantiles. With pure per-sample noise (no seed or world effect) the crossed
resampling of seeds and problems errs wide instead (tests/test_bootstrap.py), which is why it looked safe.
The Interval record and the metric (`level_mean`, `paired_difference`) here are shared by both methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

B_DEFAULT = 2000
RNG_SEED = 18          # fixed: an interval is a function of the data (issue 18)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A difference (arm a minus arm b) with its interval and the method that made it (`df`: a t-interval's)."""

    estimate: float
    low: float
    high: float
    n_worlds: int = 1
    n_seeds: int = 1
    n_problems: int = 0
    df: float | None = None
    method: str = "paired percentile bootstrap"

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def as_matrix(values: np.ndarray | Sequence) -> np.ndarray:
    """(seeds, problems) float array; a vector is one seed (the base arm, which does not train)."""
    m = np.asarray(values, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[1] == 0:
        raise ValueError(f"expected a (seeds, problems) matrix, got shape {m.shape}")
    return m


def paired_difference(a, b) -> np.ndarray:
    """a - b per (seed, problem); an arm with one row (the base) is the same for every seed of the other."""
    a, b = as_matrix(a), as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the two arms were evaluated on different problems ({a.shape[1]} vs {b.shape[1]})")
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"paired arms need the same seeds, got {a.shape[0]} and {b.shape[0]}")
    return a - b


def level_mean(values, levels: Sequence) -> float:
    """The metric: mean over levels of the mean over seeds and problems of that level."""
    m, levels = as_matrix(values), np.asarray(levels)
    return float(np.mean([m[:, levels == lv].mean() for lv in _unique(levels)]))


def world_replicates(diff, levels: Sequence, *, b: int = B_DEFAULT, rng: np.random.Generator) -> np.ndarray:
    """`b` bootstrap replicates of `level_mean(diff, levels)`: seeds resampled with replacement, and problems
    with replacement within each level (the same draw for both arms, since `diff` is already paired)."""
    d, levels = as_matrix(diff), np.asarray(levels)
    n_seeds, n_problems = d.shape
    if len(levels) != n_problems:
        raise ValueError(f"{len(levels)} levels for {n_problems} problems")
    seed_w = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b) / n_seeds  # (b, seeds)
    per_problem = seed_w @ d                                                                # (b, problems)
    groups = _unique(levels)
    stat = np.zeros(b)
    for lv in groups:
        cols = np.flatnonzero(levels == lv)
        counts = rng.multinomial(len(cols), np.full(len(cols), 1.0 / len(cols)), size=b)
        stat += (per_problem[:, cols] * counts).sum(axis=1) / len(cols)
    return stat / len(groups)


def paired_bootstrap_interval(a, b, levels: Sequence, *, n_boot: int = B_DEFAULT, seed: int = RNG_SEED,
                              confidence: float = CONFIDENCE) -> Interval:
    """Mean difference a - b in one world with its paired bootstrap interval."""
    d = paired_difference(a, b)
    reps = world_replicates(d, levels, b=n_boot, rng=np.random.default_rng(seed))
    low, high = percentile_bounds(reps, confidence)
    return Interval(level_mean(d, levels), low, high, 1, d.shape[0], d.shape[1])


def pooled_bootstrap_interval(worlds: Sequence[tuple], *, n_boot: int = B_DEFAULT, seed: int = RNG_SEED,
                              confidence: float = CONFIDENCE) -> Interval:
    """The mean over worlds of the difference a - b, worlds a random effect: each replicate draws worlds with
    replacement, then for each drawn world an independent within-world replicate (seeds, problems in levels).
    `worlds`: [(a, b, levels)] per world."""
    if not worlds:
        raise ValueError("no worlds to pool")
    rng = np.random.default_rng(seed)
    diffs = [(paired_difference(a, b), np.asarray(levels)) for a, b, levels in worlds]
    table = np.stack([world_replicates(d, lv, b=n_boot, rng=rng) for d, lv in diffs])  # (worlds, b)
    low, high = percentile_bounds(pooled_replicates(table, rng), confidence)
    estimate = float(np.mean([level_mean(d, lv) for d, lv in diffs]))
    return Interval(estimate, low, high, len(diffs), max(d.shape[0] for d, _ in diffs),
                    sum(d.shape[1] for d, _ in diffs), method="percentile bootstrap over worlds")


def pooled_replicates(table: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replicates of the mean over worlds from each world's replicates `table` (worlds, b): each draws the
    worlds with replacement and, for each drawn world, one of its replicates."""
    k, n_boot = table.shape
    picks = rng.integers(0, k, size=(n_boot, k))
    draws = rng.integers(0, n_boot, size=(n_boot, k))
    return table[picks, draws].mean(axis=1)


def percentile_bounds(reps: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return float(low), float(high)


def _unique(levels: np.ndarray) -> list:
    return list(dict.fromkeys(levels.tolist()))


__all__ = ["B_DEFAULT", "CONFIDENCE", "RNG_SEED", "Interval", "as_matrix", "level_mean", "paired_bootstrap_interval",
           "paired_difference", "percentile_bounds", "pooled_bootstrap_interval", "pooled_replicates",
           "world_replicates"]
