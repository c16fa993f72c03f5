"""Coverage of the study's intervals on simulated studies with a known answer (pure numpy, vectorised).

A simulated study is the real one's layout: k worlds, two arms (a, b) with `n_seeds` RL seeds each (or b the
base: one row, no seed), greedy 0/1 per problem in 5 levels of 26, 187, 400, 400, 400 test problems. On the
logit scale, problem p of level l in world w, arm x, seed s is right with probability

    sigmoid(m_l + eta_p + u_w + zeta_wp + e_wxs + [x = a] (gain + delta_w + xi_wp))

eta_p: the problem's difficulty (one test split: shared by the worlds); u_w: the world's base; zeta_wp: the
problem in that world; e_wxs: one trained model (a seed); delta_w: the world's own gain; xi_wp: the gain on
one problem in one world. All normal with the model's SDs. The truths are expectations over everything but
the world (a world's contrast theta_w) and over everything (the pooled mu), computed by Gauss-Hermite
quadrature of the sigmoid of a normal, so the estimand is the metric (mean over levels of accuracy), not a
logit. The defaults are fitted to the first study (docs/results/study, held-out worlds, two trained arms):
per-seed SD of an arm's metric 0.023 (study: 0.024), of which the (seed x problem) interaction is 16% (study:
16%: a model solves a problem or not, hence problem_sd 5), per-world standard error 0.022 (0.022), 95% of it
from seeds (94%), Satterthwaite df ~3.5 (3.7), world estimates spread with SD 0.032 (H2: 0.033), level
accuracies 0.12-0.85. REGIMES adds the wider spreads of H3-H6 (SD ~0.06) and of H1 (trained vs base, ~0.08).

    coverage(StudyModel(n_worlds=5), n_studies=400, seed=0)  # {"pooled t": {"coverage", "width", "n"}, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from agents.experiments.bootstrap import CONFIDENCE, percentile_bounds, pooled_replicates
from agents.experiments.intervals import hartung_knapp_moments, pooled_t_moments, t_bounds, world_moments

LEVEL_SIZES = (26, 187, 400, 400, 400)  # the arith test split at 400 per level (docs/study-protocol.md)
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class StudyModel:
    """A family of simulated studies; SDs on the logit scale (see the module docstring)."""

    n_worlds: int = 5
    n_seeds: int = 3
    level_sizes: tuple[int, ...] = LEVEL_SIZES
    level_accuracy: tuple[float, ...] = (0.85, 0.7, 0.5, 0.3, 0.12)  # arm b's expected accuracy per level
    gain: float = 0.4              # arm a's mean gain (logit)
    problem_sd: float = 5.0        # eta: a problem's difficulty within its level, shared by the worlds
    world_sd: float = 0.5          # u: a world's base (its accuracy)
    world_gain_sd: float = 0.45    # delta: a world's own gain, the between-world spread of the contrast
    problem_world_sd: float = 0.5  # zeta: a problem's difficulty in one world, beyond the shared one
    problem_gain_sd: float = 0.5   # xi: the gain on one problem in one world (arm x problem)
    seed_sd: float = 0.42          # e: one trained model (world, arm, seed)
    reference: str = "trained"     # arm b: "trained" (n_seeds seeds) or "base" (one row, no seed effect)

    def __post_init__(self) -> None:
        if self.reference not in ("trained", "base"):
            raise ValueError(f"reference must be 'trained' or 'base', got {self.reference!r}")
        if self.n_worlds < 2 or self.n_seeds < 1 or len(self.level_sizes) != len(self.level_accuracy):
            raise ValueError("a model needs >= 2 worlds, >= 1 seed and one accuracy per level")

    @property
    def levels(self) -> np.ndarray:
        return np.repeat(np.arange(1, len(self.level_sizes) + 1), self.level_sizes)

    @property
    def _m(self) -> np.ndarray:
        """Each level's mean logit, chosen so that arm b's expected accuracy there is `level_accuracy`."""
        acc = np.asarray(self.level_accuracy, dtype=float)
        spread = self._variances()[1] + self.world_sd**2
        lo, hi = np.full_like(acc, -60.0), np.full_like(acc, 60.0)
        for _ in range(60):
            mid = (lo + hi) / 2
            below = _mean_sigmoid(mid, spread) < acc
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (lo + hi) / 2

    def _variances(self) -> tuple[float, float]:
        """The logit variance within a world that a problem-and-seed average integrates over, arms a and b."""
        common = self.problem_sd**2 + self.problem_world_sd**2
        seed_b = self.seed_sd**2 if self.reference == "trained" else 0.0
        return common + self.problem_gain_sd**2 + self.seed_sd**2, common + seed_b

    def world_truth(self, u: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """theta_w: the world's expected contrast (over problems and seeds) given its base u and gain delta."""
        va, vb = self._variances()
        m = self._m[:, None] + np.asarray(u, dtype=float).ravel()[None, :]
        gain = self.gain + np.asarray(delta, dtype=float).ravel()[None, :]
        theta = (_mean_sigmoid(m + gain, va) - _mean_sigmoid(m, vb)).mean(axis=0)
        return theta.reshape(np.shape(u))

    def pooled_truth(self) -> float:
        """mu: the expected contrast over worlds too (the pooled estimand)."""
        va, vb = self._variances()
        va += self.world_sd**2 + self.world_gain_sd**2
        vb += self.world_sd**2
        return float((_mean_sigmoid(self._m + self.gain, va) - _mean_sigmoid(self._m, vb)).mean())

    def simulate(self, n_studies: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`n_studies` studies: a (studies, worlds, seeds, problems) and b (..., seeds or 1, problems) as 0/1
        float arrays, and theta (studies, worlds): each world's true contrast."""
        r, k, s = n_studies, self.n_worlds, self.n_seeds
        sb = s if self.reference == "trained" else 1
        p = int(sum(self.level_sizes))
        f32 = np.float32  # 0/1 draws: single precision halves the time of the per-(seed, problem) work

        def normal(sd, shape):
            return rng.standard_normal(shape, dtype=f32) * f32(sd)

        u, delta = rng.standard_normal((r, k, 1, 1)), self.world_gain_sd * rng.standard_normal((r, k, 1, 1))
        base = self._m[self.levels - 1].astype(f32) + normal(self.problem_sd, (r, 1, 1, p))
        base = base + (self.world_sd * u).astype(f32) + normal(self.problem_world_sd, (r, k, 1, p))
        shift_a = base + (self.gain + delta).astype(f32) + normal(self.problem_gain_sd, (r, k, 1, p))
        a = _bernoulli(shift_a + normal(self.seed_sd, (r, k, s, 1)), rng)
        b = _bernoulli(base + normal(self.seed_sd, (r, k, sb, 1)) if self.reference == "trained"
                       else base.copy(), rng)
        theta = self.world_truth(self.world_sd * u[..., 0, 0], delta[..., 0, 0])
        return {"a": a, "b": b, "theta": theta}


REGIMES = {
    "H2": StudyModel(),
    "H3-H6": StudyModel(gain=0.5, world_gain_sd=1.1),
    "H1": StudyModel(gain=1.5, world_gain_sd=1.5, reference="base"),
}
REGIME_TEXT = {
    "H2": "two trained arms, world estimates spread with SD ~0.03 (the study's H2: 0.033)",
    "H3-H6": "two trained arms, spread ~0.06 (the study's H3-H6: 0.055-0.081)",
    "H1": "a trained arm vs the base (one row, no seed), spread ~0.08 (the study's H1: 0.091)",
}


def coverage(model: StudyModel, n_studies: int, *, seed: int = 0, bootstrap: int = 0,
             bootstrap_studies: int | None = None, confidence: float = CONFIDENCE) -> dict:
    """The share of simulated studies whose interval covers the truth, per method: pooled (mu) and per world
    (theta_w, every world of every study), with mean widths. Methods: `t` (the adopted ones), `hk`
    (Hartung-Knapp, pooled only), and with `bootstrap` = B > 0 the old percentile bootstrap (B replicates,
    on the first `bootstrap_studies` studies: it loops in Python)."""
    rng = np.random.default_rng(seed)
    mu = model.pooled_truth()
    per_study = max(1, int(4e6 // (model.n_worlds * model.n_seeds * sum(model.level_sizes))))
    hits: dict[str, list] = {"pooled t": [], "pooled hk": [], "world t": [], "pooled bootstrap": [],
                             "world bootstrap": []}
    widths: dict[str, list] = {name: [] for name in hits}
    spread, seed_sd, truth_sd, within = [], [], [], []
    n_boot_studies = n_studies if bootstrap_studies is None else bootstrap_studies
    done = 0
    while done < n_studies:
        chunk = min(per_study, n_studies - done)
        sim = model.simulate(chunk, rng)
        est, var, df = world_moments(sim["a"], sim["b"], model.levels)
        low, high = t_bounds(est, var, df, confidence)
        _record(hits, widths, "world t", low, high, sim["theta"])
        for name, moments in (("pooled t", pooled_t_moments(est)), ("pooled hk", hartung_knapp_moments(est, var))):
            low, high = t_bounds(*moments, confidence)
            _record(hits, widths, name, low, high, mu)
        spread.append(est.std(axis=-1, ddof=1))
        truth_sd.append(sim["theta"].std(axis=-1, ddof=1))
        within.append(var.ravel())
        seed_sd.append(_seed_metric_sd(sim["a"], model.levels))
        for i in range(max(0, min(chunk, n_boot_studies - done)) if bootstrap else 0):
            _bootstrap_study(sim, i, model.levels, bootstrap, rng, confidence, mu, hits, widths)
        done += chunk
    out = {"mu": mu, "n_studies": n_studies, "worlds": model.n_worlds, "confidence": confidence,
           "world_estimate_sd": float(np.mean(np.concatenate(spread))),
           "world_truth_sd": float(np.mean(np.concatenate(truth_sd))),
           "world_se": float(np.sqrt(np.mean(np.concatenate(within)))),
           "seed_metric_sd": float(np.mean(np.concatenate(seed_sd)))}
    for name in hits:
        if hits[name]:
            covered = np.concatenate(hits[name])
            out[name] = {"coverage": float(covered.mean()), "n": int(covered.size),
                         "width": float(np.mean(np.concatenate(widths[name])))}
    return out


def compare(worlds=(3, 5, 12), n_studies: int = 2000, *, bootstrap: int = 400, bootstrap_studies: int = 200,
            seed: int = 0, regimes=tuple(REGIMES)) -> list[dict]:
    """`coverage` per regime and world count (the table of docs/results/study/intervals-reanalysis.md)."""
    return [{"regime": name, **coverage(replace(REGIMES[name], n_worlds=k), n_studies, seed=seed + 100 * i + k,
                                         bootstrap=bootstrap, bootstrap_studies=bootstrap_studies)}
            for i, name in enumerate(regimes) for k in worlds]


def _bootstrap_study(sim, i, levels, n_boot, rng, confidence, mu, hits, widths) -> None:
    """The old method on study i: per world the paired percentile bootstrap, pooled the bootstrap over worlds
    (`pooled_replicates` and `percentile_bounds` are bootstrap.py's; the replicates `bootstrap_replicates`)."""
    table = bootstrap_replicates(sim["a"][i], sim["b"][i], levels, n_boot, rng)   # (worlds, b)
    bounds = np.array([percentile_bounds(reps, confidence) for reps in table])
    _record(hits, widths, "world bootstrap", bounds[:, 0], bounds[:, 1], sim["theta"][i])
    low, high = percentile_bounds(pooled_replicates(table, rng), confidence)
    _record(hits, widths, "pooled bootstrap", np.array([low]), np.array([high]), mu)


def bootstrap_replicates(a: np.ndarray, b: np.ndarray, levels: np.ndarray, n_boot: int,
                         rng: np.random.Generator) -> np.ndarray:
    """bootstrap.world_replicates for every world at once, (worlds, n_boot): the same resampling (seeds with
    replacement, then problems with replacement within levels, one draw for both arms) and the same
    distribution, the problem counts drawn by bincount of uniform picks rather than `rng.multinomial`, and the
    weighted sums as one matrix product (~10x faster; tests/test_interval_coverage.py compares the two)."""
    d = (a - b).astype(float)                                          # (worlds, seeds, problems)
    k, s, p = d.shape
    seed_w = rng.multinomial(s, np.full(s, 1.0 / s), size=(k, n_boot)) / s          # (worlds, b, seeds)
    groups = np.unique(levels)
    per_seed = np.zeros((k, n_boot, s))               # each replicate's metric per seed, under its problem draw
    for lv in groups:
        cols = np.flatnonzero(levels == lv)
        n = len(cols)
        picks = rng.integers(0, n, size=(k * n_boot, n)) + (np.arange(k * n_boot) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=k * n_boot * n).reshape(k, n_boot, n).astype(float)
        per_seed += np.matmul(counts, np.swapaxes(d[..., cols], -1, -2)) / (n * len(groups))
    return (seed_w * per_seed).sum(axis=-1)


def _record(hits, widths, name, low, high, truth) -> None:
    hits[name].append(np.ravel((low <= truth) & (truth <= high)))
    widths[name].append(np.ravel(high - low))


def _seed_metric_sd(a: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The SD over seeds of arm a's metric, per (study, world): to compare with the real study's ~0.02."""
    per_seed = np.mean([a[..., levels == lv].mean(axis=-1) for lv in np.unique(levels)], axis=0)
    return per_seed.std(axis=-1, ddof=1).ravel() if a.shape[-2] > 1 else np.zeros(0)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bernoulli(logit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0/1 (float32) with probability sigmoid(logit), overwriting `logit`: U < sigmoid(x) iff 2U - 1 < tanh(x/2)."""
    np.multiply(logit, np.float32(0.5), out=logit)
    np.tanh(logit, out=logit)
    draw = rng.random(logit.shape, dtype=np.float32)
    np.multiply(draw, np.float32(2.0), out=draw)
    np.subtract(draw, np.float32(1.0), out=draw)
    return (draw < logit).astype(np.float32)


def _mean_sigmoid(m, var: float) -> np.ndarray:
    """E sigmoid(N(m, var)), elementwise in m (Gauss-Hermite, 80 nodes)."""
    m = np.asarray(m, dtype=float)
    return (_sigmoid(m[..., None] + np.sqrt(var) * _NODES) * _WEIGHTS).sum(axis=-1)


__all__ = ["LEVEL_SIZES", "REGIMES", "REGIME_TEXT", "StudyModel", "bootstrap_replicates", "compare", "coverage"]
