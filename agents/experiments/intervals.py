"""The study's intervals for a contrast (arm a minus arm b): per world, and pooled over worlds (scipy: t quantiles).

    world_t_interval(a, b, levels)            # one world: seed-to-seed variance + problem sampling, Welch df
    pooled_t_interval([(a1, b1, lv1), ...])   # worlds: a t-interval over the worlds' estimates, k - 1 df

Per world. The estimate is `level_mean(a) - level_mean(b)` (bootstrap.py: levels weigh the same). Its
variance has three parts, estimated from a crossed (seed x problem) layout per level: each trained arm's
seed-to-seed variance of its per-seed metric over its seed count (the arms are separate training runs, so
the seeds are not paired: Welch; in the first study the same-seed deviations of two arms correlate at 0.03),
plus the problem-sampling variance of the paired per-problem difference (within levels), less each seeded
arm's (seed x problem) residual mean square, which both of the others count (the ANOVA estimator of a crossed
design; the problem part is floored at 0). The interval is t with Satterthwaite's df: with 3 seeds per arm the
seed part has 2-4 df, and the t quantile (2.8-4.3, not 1.96) is what the bootstrap of 3 seeds missed. An arm
with one row (the base, which does not train: greedy evaluation has no seed) adds no seed part; a trained arm
with one seed cannot show its seed variance, and its interval is then conditional on that seed.

Pooled. The estimand is the mean contrast over the population of worlds the held-out ones are drawn from,
and the estimate the unweighted mean of the worlds' estimates (the protocol's). Three candidates were
measured on simulated studies with world-, seed- and problem-level effects fitted to the first study
(interval_coverage.py; table in docs/results/study/intervals-reanalysis.md, 2000 studies a row): the
t-interval over the worlds' estimates (k - 1 df): 94.5-95.6% with 3, 5 and 12 worlds in every regime; the
Hartung-Knapp random-effects interval (weights 1 / (v_i + tau^2), k - 1 df): 93.4-95.4%, below 95% where the
worlds differ little, because its weights rest on within-world variances whose seed part has 2-4 df; the old
percentile bootstrap over worlds: 74-95%, worst with 3-5 worlds that differ more than their seeds (it shrinks
the between-world variance by (k - 1) / k and reads normal quantiles where t with k - 1 df is needed). The
t-interval is adopted: the best coverage, no within-world variance needed, and the protocol's unweighted
estimate kept. One world pools to its own `world_t_interval`.

Per world, measured the same way: 96% for two trained arms (the bootstrap over 3 seeds: 86-88%), 93.6-94.1%
for a trained arm against the base (the bootstrap: 89-91%): Welch-Satterthwaite is slightly liberal when one
2-df part dominates, the interval being narrow when the 3 seeds happen to agree. With no seed effect at all
(per-sample coin flips) it is conservative (~98.5%): 3 seeds cannot tell coin flips from a seed effect.

Both are closed forms: the same data give the same interval, with no RNG. The `*_moments` functions work on
stacked arrays (leading axes are replicate studies or worlds), which is what the coverage simulation runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agents.experiments.bootstrap import CONFIDENCE, Interval, as_matrix, level_mean, paired_difference

WORLD_METHOD = "t, seed-to-seed (Welch) + problem-sampling variance, Satterthwaite df"
POOLED_METHOD = "t over the worlds' estimates, k-1 df"


def world_moments(a, b, levels: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(estimate, variance, Satterthwaite df) of `level_mean(a) - level_mean(b)`; `a`: (..., seeds_a, problems),
    `b`: (..., seeds_b, problems), leading axes broadcast. df is nan where the variance is 0."""
    a, b, levels = _floats(a), _floats(b), np.asarray(levels)
    if a.shape[-1] != b.shape[-1] or a.shape[-1] != len(levels):
        raise ValueError(f"arms on {a.shape[-1]} and {b.shape[-1]} problems with {len(levels)} levels")
    groups = list(dict.fromkeys(levels.tolist()))
    n_levels = len(groups)
    per_seed = [0.0, 0.0]              # each arm's metric per seed: (..., seeds)
    prob = prob_den = res = res_den = 0.0
    for lv in groups:
        cols = _columns(levels == lv)
        arms = (a[..., cols], b[..., cols])
        n = arms[0].shape[-1]
        seed_sums = [x.sum(axis=-1, dtype=float) for x in arms]                # (..., seeds) per arm
        per_seed = [p + m / n / n_levels for p, m in zip(per_seed, seed_sums)]
        if n < 2:
            continue
        problem_sums = [x.sum(axis=-2, dtype=float) for x in arms]             # (..., n) per arm
        diff = problem_sums[0] / arms[0].shape[-2] - problem_sums[1] / arms[1].shape[-2]  # paired, per problem
        part = diff.var(axis=-1, ddof=1) / n / n_levels**2
        prob, prob_den = prob + part, prob_den + part**2 / (n - 1)
        for x, rows, cols_sum in zip(arms, seed_sums, problem_sums):
            s = x.shape[-2]
            if s < 2:
                continue
            squares = np.einsum("...ij,...ij->...", x, x, dtype=float)
            total = rows.sum(axis=-1)
            ss = squares - (cols_sum**2).sum(-1) / s - (rows**2).sum(-1) / n + total**2 / (s * n)
            dof = (s - 1) * (n - 1)
            part = np.maximum(ss, 0.0) / dof / (s * n) / n_levels**2
            res, res_den = res + part, res_den + part**2 / dof
    estimate = per_seed[0].mean(axis=-1) - per_seed[1].mean(axis=-1)
    variance = np.zeros(np.shape(estimate))
    den = np.zeros(np.shape(estimate))
    for m in per_seed:
        s = m.shape[-1]
        if s > 1:
            v = m.var(axis=-1, ddof=1) / s
            variance, den = variance + v, den + v**2 / (s - 1)
    excess = np.asarray(prob - res, dtype=float)
    keep = excess > 0
    variance = variance + np.where(keep, excess, 0.0)
    den = den + np.where(keep, prob_den + res_den, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(variance > 0, variance**2 / den, np.nan)
    return estimate, variance, np.maximum(df, 1.0)


def t_quantile(p: float, df) -> np.ndarray | float:
    """Student's t quantile for real df >= 1 (Satterthwaite's are not integers), by scipy."""
    from scipy.stats import t

    df = np.asarray(df, dtype=float)
    if np.any(df < 1):
        raise ValueError(f"degrees of freedom must be >= 1, got {df.min()}")
    q = t.ppf(p, df)
    return float(q) if q.ndim == 0 else q


def t_bounds(estimate, variance, df, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """estimate -/+ t_{(1+confidence)/2, df} sqrt(variance); the estimate itself where the variance is 0."""
    _check(confidence)
    estimate, variance, df = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (estimate, variance, df)))
    zero = ~(variance > 0)
    q = np.zeros(estimate.shape)
    if np.any(~zero):
        q[~zero] = t_quantile((1 + confidence) / 2, df[~zero])
    half = np.where(zero, 0.0, q * np.sqrt(np.where(zero, 0.0, variance)))
    return estimate - half, estimate + half


def world_t_interval(a, b, levels: Sequence, *, confidence: float = CONFIDENCE) -> Interval:
    """Mean difference a - b in one world with its t interval (seed-to-seed and problem-sampling variance)."""
    d = paired_difference(a, b)  # checks the shapes
    ma, mb = as_matrix(a), as_matrix(b)
    estimate, variance, df = world_moments(ma, mb, levels)
    low, high = t_bounds(estimate, variance, df, confidence)
    return Interval(float(estimate), float(low), float(high), 1, d.shape[0], d.shape[1],
                    df=_df(df), method=WORLD_METHOD)


def pooled_t_moments(estimates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, variance of the mean, df) over the last axis of the worlds' estimates: s^2 / k with k - 1 df."""
    y = np.asarray(estimates, dtype=float)
    k = y.shape[-1]
    if k < 2:
        raise ValueError(f"a t-interval over worlds needs at least 2 worlds, got {k}")
    return y.mean(axis=-1), y.var(axis=-1, ddof=1) / k, np.full(y.shape[:-1], k - 1.0)


def hartung_knapp_moments(estimates, variances) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, variance, df) of the random-effects mean over the last axis: DerSimonian-Laird tau^2, weights
    1 / (v_i + tau^2), the Hartung-Knapp variance sum w_i (y_i - mean)^2 / ((k - 1) sum w_i), k - 1 df.
    Measured against the t-interval in interval_coverage.py; not the study's method."""
    y = np.asarray(estimates, dtype=float)
    v = np.maximum(np.asarray(variances, dtype=float), 1e-12)
    k = y.shape[-1]
    if k < 2:
        raise ValueError(f"a random-effects interval needs at least 2 worlds, got {k}")
    w = 1 / v
    fixed = (w * y).sum(-1, keepdims=True) / w.sum(-1, keepdims=True)
    q = (w * (y - fixed) ** 2).sum(-1)
    tau2 = np.maximum(0.0, (q - (k - 1)) / (w.sum(-1) - (w**2).sum(-1) / w.sum(-1)))
    w = 1 / (v + tau2[..., None])
    mean = (w * y).sum(-1) / w.sum(-1)
    variance = (w * (y - mean[..., None]) ** 2).sum(-1) / ((k - 1) * w.sum(-1))
    return mean, variance, np.full(y.shape[:-1], k - 1.0)


def pooled_t_interval(worlds: Sequence[tuple], *, confidence: float = CONFIDENCE) -> Interval:
    """The mean over worlds of the difference a - b with the t-interval over the worlds' estimates (k - 1 df);
    one world: its `world_t_interval`. `worlds`: [(a, b, levels)] per world."""
    if not worlds:
        raise ValueError("no worlds to pool")
    diffs = [(paired_difference(a, b), np.asarray(levels)) for a, b, levels in worlds]
    seeds, problems = max(d.shape[0] for d, _ in diffs), sum(d.shape[1] for d, _ in diffs)
    if len(worlds) == 1:
        one = world_t_interval(*worlds[0], confidence=confidence)
        return Interval(one.estimate, one.low, one.high, 1, seeds, problems, df=one.df, method=one.method)
    mean, variance, df = pooled_t_moments([level_mean(d, lv) for d, lv in diffs])
    low, high = t_bounds(mean, variance, df, confidence)
    return Interval(float(mean), float(low), float(high), len(worlds), seeds, problems, df=_df(df),
                    method=POOLED_METHOD)


def _columns(mask: np.ndarray) -> slice | np.ndarray:
    """A level's columns: a slice where they are contiguous (no copy), else their indices."""
    idx = np.flatnonzero(mask)
    return slice(idx[0], idx[-1] + 1) if idx[-1] - idx[0] + 1 == len(idx) else idx


def _floats(x) -> np.ndarray:
    """float64, or float32 where given (the coverage simulation's 0/1 arrays: exact sums, half the work)."""
    x = np.asarray(x)
    return x if x.dtype in (np.float32, np.float64) else x.astype(float)


def _df(df) -> float | None:
    df = float(df)
    return None if np.isnan(df) else round(df, 2)


def _check(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


__all__ = ["POOLED_METHOD", "WORLD_METHOD", "hartung_knapp_moments", "pooled_t_interval", "pooled_t_moments",
           "t_bounds", "t_quantile", "world_moments", "world_t_interval"]
