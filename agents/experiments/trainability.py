"""Will label-free RL help this base? A prediction read off the base alone, and how to score it over worlds.

    diagnosis = diagnose(report.to_dict(), mask=0.75)      # a tiny-base profile or a `cuma base --model` one
    diagnosis["prediction"], diagnosis["prediction_label_free"]
    rho, low, high = rank_correlation(predicted, measured)  # over worlds: do the predictions rank the gains?

Per level, from the base's profile (k samples per problem, greedy and sampled): maj@k - greedy pass@1; the
parse rate; the agreement (mean share of the k samples in the largest answer cluster, unanswered included in
k); the share of groups the 2-vote mask keeps (largest cluster >= 2) and the 6-of-8 mask keeps (>= ceil(0.75k),
at least 2); the majority's accuracy among the groups each keeps; and the same under the recipe's `mask`.

The two predictions per base, fixed here before any study's gain was compared with them (a mask of m votes,
c the largest cluster of a group, levels weighted equally as the study's metric weights them):

- `prediction` (reads the labels of the profiled split, so profile validation, never the split the gains are
  measured on): the mean over levels of kept_m x (maj@k - greedy). The room a majority label can teach greedy
  decoding, where the mask lets it teach at all.
- `prediction_label_free` (reads no label): the mean over levels of the mean over groups of
  1[c >= m] x (c/k)(1 - c/k). The variance of the majority reward in a group the mask keeps: GRPO's
  advantages are zero in a masked group and in a unanimous one, so this is how much gradient the recipe gets,
  whatever its direction.

`rank_correlation`: Spearman's rho (average ranks for ties) with a Fisher-z interval, the variance
1.06 / (n - 3) of Fieller, Hartley and Pearson (1957) for rank correlations. Why not the bootstrap over worlds
by default: with 6-15 worlds a resample holds few distinct worlds, percentile intervals come out too narrow
and some resamples have no ranking at all (every value tied); the Fisher interval is closed-form and widens
honestly as n shrinks (`method="bootstrap"` gives the percentile one for comparison). `permutation_p` is the
exact two-sided test of rho = 0 (all n! orders up to n = 8), which stays valid at any n.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from cuma_env.voting import resolve_min_votes

STRICT_SHARE = 0.75  # the gated recipe's 6-of-8 mask
RNG_SEED = 18        # the study's bootstrap seed (agents.experiments.bootstrap)
FIELLER = 1.06       # var(atanh(rho_s)) ~ 1.06 / (n - 3)
EXACT_UP_TO = 8      # permutation_p enumerates every order up to this many worlds


def mask_votes(mask: int | float, samples: int) -> int:
    """A mask (a count, or a share of the group as the env's `min_votes`) as a vote count; 1 keeps any answer."""
    return resolve_min_votes(mask, samples, name="mask", size_name="samples")


def strict_votes(samples: int) -> int:
    """The 6-of-8 mask at `samples` samples, as `agents.model_profile` counts it: ceil(0.75 k), at least 2."""
    return max(2, mask_votes(STRICT_SHARE, samples))


def profile_levels(profile: Any, *, rule: str | None = None, budget: int | None = None,
                   levels: Sequence[str] | None = None) -> tuple[int, dict[str, dict[str, Any]]]:
    """(k, {level name: {n, greedy, maj, parsed, clusters}}) of a tiny-base profile (`BaseReport`) or a model's
    (`ModelProfile`), either object or its `to_dict()`. `clusters`: largest-cluster size -> (groups, majority
    accuracy). A model profile is read under `rule` (default `fallback`, the env's default) at `budget` (default
    its largest) and on its arithmetic levels (`L1`...) unless `levels` names groups."""
    data = profile.to_dict() if hasattr(profile, "to_dict") else profile
    if not isinstance(data, Mapping) or "samples" not in data or not ("levels" in data or "groups" in data):
        raise ValueError("a profile is a tiny-base report (levels) or a model profile (groups) with samples")
    out: dict[str, dict[str, Any]] = {}
    if "levels" in data:  # agents.tiny.profile.BaseReport
        for s in data["levels"]:
            out[f"L{s['level']}"] = {"n": s["n"], "greedy": s["greedy"], "maj": s["maj"],
                                     "parsed": 1.0 - s["no_answer"], "clusters": _clusters(s["majority_by_cluster"])}
    else:  # agents.model_profile.ModelProfile
        rule = rule or "fallback"
        for g in data["groups"]:
            cells = g["cells"].get(rule)
            if cells is None:
                raise ValueError(f"rule must be one of {sorted(g['cells'])}, got {rule!r}")
            by_budget = {int(b): s for b, s in cells.items()}
            b = max(by_budget) if budget is None else int(budget)
            if b not in by_budget:
                raise ValueError(f"budget must be one of {sorted(by_budget)}, got {budget!r}")
            s = by_budget[b]
            if not s.get("majority_by_cluster"):
                raise ValueError(f"group {g['name']}: the profile has no cluster sizes (profiled before they were "
                                 "recorded); profile the model again")
            out[g["name"]] = {"n": s["n"], "greedy": s["greedy"], "maj": s["maj"], "parsed": s["parsed"],
                              "clusters": _clusters(s["majority_by_cluster"])}
        if levels is None:
            levels = [name for name in out if name[:1] == "L" and name[1:].isdigit()] or list(out)
    if levels is not None:
        missing = [name for name in levels if name not in out]
        if missing:
            raise ValueError(f"the profile has no group {missing[0]!r}; it has {sorted(out)}")
        out = {name: out[name] for name in levels}
    if not out:
        raise ValueError("the profile has no level")
    return int(data["samples"]), out


def level_features(n: int, greedy: float, maj: float, parsed: float, clusters: Mapping[int, tuple[int, float]],
                   samples: int, mask: int | float = STRICT_SHARE) -> dict[str, Any]:
    """The diagnostic's features of one level (see the module docstring); `clusters` as `profile_levels` gives."""
    if sum(g for g, _ in clusters.values()) != n or n < 1:
        raise ValueError(f"the cluster sizes count {sum(g for g, _ in clusters.values())} groups, the level {n}")
    m, k = mask_votes(mask, samples), samples

    def kept(votes: int) -> tuple[float, float | None, float]:
        rows = [(g, acc, c) for c, (g, acc) in clusters.items() if c >= votes and g]
        groups = sum(g for g, _, _ in rows)
        accuracy = sum(g * acc for g, acc, _ in rows) / groups if groups else None
        signal = sum(g * (c / k) * (1 - c / k) for g, _, c in rows) / n
        return groups / n, accuracy, signal

    share, accuracy, signal = kept(m)
    kept_2, acc_2, _ = kept(2)
    kept_s, acc_s, _ = kept(strict_votes(k))
    return {"n": n, "greedy": greedy, "maj": maj, "maj_minus_greedy": maj - greedy, "parsed": parsed,
            "agreement": sum(g * c for c, (g, _) in clusters.items()) / (n * k),
            "kept_2vote": kept_2, "kept_6of8": kept_s, "maj_acc_2vote": acc_2, "maj_acc_6of8": acc_s,
            "kept": share, "maj_acc_kept": accuracy, "room": share * (maj - greedy), "signal": signal}


def diagnose(profile: Any, *, mask: int | float = STRICT_SHARE, rule: str | None = None, budget: int | None = None,
             levels: Sequence[str] | None = None) -> dict[str, Any]:
    """The per-level features and the two predictions (module docstring) of one base's profile under the
    recipe's `mask` (a count, or a share of the group: 0.75 is the gated recipe's 6-of-8, 2 paper CuMa's, 1 none).
    """
    k, per_level = profile_levels(profile, rule=rule, budget=budget, levels=levels)
    features = {name: level_features(samples=k, mask=mask, **stats) for name, stats in per_level.items()}
    data = profile.to_dict() if hasattr(profile, "to_dict") else profile
    return {"samples": k, "mask": mask, "mask_votes": mask_votes(mask, k), "split": data.get("split"),
            "rule": rule if "groups" in data else None, "levels": features,
            "prediction": float(np.mean([f["room"] for f in features.values()])),
            "prediction_label_free": float(np.mean([f["signal"] for f in features.values()]))}


def format_diagnosis(profile: Any, *, rule: str | None = None, budget: int | None = None,
                     levels: Sequence[str] | None = None) -> str:
    """The lines `cuma base` prints: the features per level and both predictions under the 2-vote and 6-of-8
    masks (the recipes of paper CuMa and the gated one)."""
    d2 = diagnose(profile, mask=2, rule=rule, budget=budget, levels=levels)
    ds = diagnose(profile, mask=STRICT_SHARE, rule=rule, budget=budget, levels=levels)
    k, split = d2["samples"], d2["split"] or "?"
    where = "" if d2["rule"] is None else f", rule {d2['rule']}"
    lines = [f"trainability (agents.experiments.trainability; split '{split}'{where}):",
             f"| level | maj@{k} - greedy | parsed | agreement | kept 2-vote (maj acc) | kept 6-of-8 (maj acc) |",
             "|" + "---|" * 6]
    for name, f in d2["levels"].items():
        lines.append(f"| {name} | {f['maj_minus_greedy']:+.2f} | {f['parsed']:.2f} | {f['agreement']:.2f} "
                     f"| {f['kept_2vote']:.2f} ({_share(f['maj_acc_2vote'])}) "
                     f"| {f['kept_6of8']:.2f} ({_share(f['maj_acc_6of8'])}) |")
    lines.append(f"trainability prediction (mean over levels), labelled: kept x (maj@{k} - greedy) 2-vote "
                 f"{d2['prediction']:+.3f}, 6-of-8 {ds['prediction']:+.3f} (reads split '{split}' labels)")
    lines.append(f"trainability prediction (mean over levels), label-free: kept reward variance 2-vote "
                 f"{d2['prediction_label_free']:.3f}, 6-of-8 {ds['prediction_label_free']:.3f}")
    return "\n".join(lines)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho along the last axis (rows of resampled or permuted worlds at once); NaN where either side
    is all ties."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=-1), rankdata(y, axis=-1)  # ties share their mean rank
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(-1) / np.where(denominator > 0, denominator, 1), np.nan)


def rank_correlation(predicted: Sequence[float], measured: Sequence[float], *, confidence: float = 0.95,
                     method: str = "fisher", n_boot: int = 2000, seed: int = RNG_SEED) -> tuple[float, float, float]:
    """(rho, low, high): Spearman's rho of the predictions and the measured gains over worlds, and its interval.

    `fisher` (default): tanh(atanh(rho) -+ z sqrt(1.06 / (n - 3))); no information, (-1, 1), at n <= 3; at
    |rho| = 1 the interval is centred at the midpoint between 1 and the next value rho can take,
    1 - 6 / (n(n^2 - 1)), so that a perfect ranking of a few worlds does not claim a zero-width interval.
    `bootstrap`: the percentile interval of rho over worlds resampled with replacement (resamples with all
    values tied are dropped). NaN throughout when either side is all ties."""
    x, y = _pairs(predicted, measured)
    if not 0 < confidence < 1 or method not in ("fisher", "bootstrap"):
        raise ValueError(f"confidence must be in (0, 1) and method fisher or bootstrap, got {confidence}, {method!r}")
    n, rho = len(x), float(spearman(x, y))
    if math.isnan(rho):
        return rho, math.nan, math.nan
    if method == "bootstrap":
        index = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        reps = spearman(x[index], y[index])
        reps = reps[~np.isnan(reps)]
        low, high = np.quantile(reps, [(1 - confidence) / 2, (1 + confidence) / 2])
        return rho, float(low), float(high)
    if n <= 3:
        return rho, -1.0, 1.0
    centre = math.copysign(min(abs(rho), 1 - 6 / (n * (n * n - 1))), rho)
    half = NormalDist().inv_cdf((1 + confidence) / 2) * math.sqrt(FIELLER / (n - 3))
    z = math.atanh(centre)
    return rho, math.tanh(z - half), math.tanh(z + half)


def permutation_p(predicted: Sequence[float], measured: Sequence[float], *, n_perm: int = 20000,
                  seed: int = RNG_SEED) -> float:
    """Two-sided p of rho = 0: the share of orders of the measured gains whose |rho| reaches the observed one
    (every order up to 8 worlds, else `n_perm` random ones and the observed order)."""
    x, y = _pairs(predicted, measured)
    observed = abs(float(spearman(x, y)))
    if math.isnan(observed):
        return math.nan
    n = len(y)
    if n <= EXACT_UP_TO:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.vstack([np.arange(n), rng.permuted(np.tile(np.arange(n), (n_perm, 1)), axis=1)])
    reps = np.abs(spearman(np.broadcast_to(x, orders.shape), y[orders]))
    return float(np.mean(reps >= observed - 1e-12))


def _pairs(predicted: Sequence[float], measured: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"a rank correlation needs two equally long lists of at least 3 finite numbers (one per "
                         f"world), got {len(np.atleast_1d(x))} and {len(np.atleast_1d(y))}")
    return x, y


def _clusters(by_cluster: Mapping[Any, Mapping[str, float]]) -> dict[int, tuple[int, float]]:
    return {int(c): (int(v["groups"]), float(v["majority_acc"])) for c, v in by_cluster.items()}


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


__all__ = ["STRICT_SHARE", "diagnose", "format_diagnosis", "level_features", "mask_votes",
           "permutation_p", "profile_levels", "rank_correlation", "spearman", "strict_votes"]
