"""From the cells' per-problem results to the study's numbers: per world and arm the final greedy pass@1 per
level and its mean, and per contrast its 95% interval per world and pooled over worlds (intervals.py: the
t-intervals, which the verdicts read; the study's first method, the percentile bootstrap over worlds, is
recorded beside each pooled figure under `pooled_percentile_bootstrap`, with the verdicts it gives).

Pooled figures use the held-out worlds only (the design world, where the defaults were chosen by reading the
test split, is reported on its own): `held_out` pools all of them, `held_out_unread` those with no variant
read while the defaults were chosen (`read_before: false`), the sensitivity check of the protocol.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agents.experiments.bootstrap import B_DEFAULT, RNG_SEED, level_mean, paired_difference, pooled_bootstrap_interval
from agents.experiments.intervals import POOLED_METHOD, WORLD_METHOD, pooled_t_interval, world_t_interval
from agents.experiments.study_arms import SHIPPED_TABLE, ArmTable

POOLS = {"held_out": lambda w: w.role == "held_out",
         "held_out_unread": lambda w: w.role == "held_out" and not w.read_before}


def arm_matrix(rows: Sequence[Mapping[str, Any]]) -> tuple[list[int], np.ndarray, np.ndarray, list[str]]:
    """(seeds, correct[seed, problem], level of each problem, problem ids) of one arm in one world."""
    rows = sorted(rows, key=lambda r: r["seed"])
    ids = [pid for lv in rows[0]["levels"].values() for pid in lv["ids"]]
    levels = np.array([int(k) for k, lv in rows[0]["levels"].items() for _ in lv["ids"]])
    matrix = []
    for r in rows:
        if [pid for lv in r["levels"].values() for pid in lv["ids"]] != ids:
            raise ValueError(f"cell {r['cell']} was evaluated on other problems than {rows[0]['cell']}")
        matrix.append([c for lv in r["levels"].values() for c in lv["correct"]])
    return [r["seed"] for r in rows], np.array(matrix, dtype=float), levels, ids


def summarize_arm(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r["seed"])
    means = [r["mean"] for r in rows]
    answered = [[sum(v["answered"]) / len(v["answered"]) for v in r["levels"].values()] for r in rows]
    entry = {"n_seeds": len(rows), "seeds": [r["seed"] for r in rows],
             "levels": [int(lv) for lv in rows[0]["levels"]],
             "per_level": [round(statistics.fmean(v), 4) for v in zip(*(r["per_level"] for r in rows))],
             "mean": round(statistics.fmean(means), 4), "seed_means": [round(m, 4) for m in means],
             "mean_sd": round(statistics.stdev(means), 4) if len(means) > 1 else 0.0,
             "answered_per_level": [round(statistics.fmean(v), 4) for v in zip(*answered)],
             "collapse": round(statistics.fmean(r["collapse"] for r in rows), 4),
             "samples": {k: round(statistics.fmean(r["samples"][k] for r in rows)) for k in rows[0]["samples"]},
             "wall_s": round(statistics.fmean(r["wall_s"] for r in rows), 1)}
    if any("matches_trainer_eval" in r for r in rows):
        entry["matches_trainer_eval"] = all(r.get("matches_trainer_eval", True) for r in rows)
    return entry


def _pair(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two arms' matrices on their common seeds (an arm with one row, the base, pairs with every seed)."""
    (sa, ma, levels, ids_a), (sb, mb, _, ids_b) = a, b
    if ids_a != ids_b:
        raise ValueError("two arms of one world were evaluated on different problems")
    if len(sa) > 1 and len(sb) > 1:
        common = sorted(set(sa) & set(sb))
        if not common:
            raise ValueError(f"two arms of one world share no seed ({sa} vs {sb})")
        ma = ma[[sa.index(s) for s in common]]
        mb = mb[[sb.index(s) for s in common]]
    return ma, mb, levels


def paired_seeds(a, b) -> list[int]:
    """The seeds `_pair` keeps: the common ones, or the seeded arm's where the other has one row (the base)."""
    (sa, *_), (sb, *_) = a, b
    if len(sa) > 1 and len(sb) > 1:
        return sorted(set(sa) & set(sb))
    return list(sa if len(sa) >= len(sb) else sb)


def per_seed_differences(ma, mb, levels, seeds: list[int]) -> dict[str, list]:
    """The contrast seed by seed (the same metric as the estimate, on one seed's rows of `_pair`'s matrices):
    with 2-3 seeds the seed variance is estimated poorly, and a sign that differs between seeds says so plainly."""
    d = paired_difference(ma, mb)
    return {"seeds": seeds, "per_seed": [round(level_mean(row[None], levels), 4) for row in d]}


def seeds_disagree(ci: Mapping[str, Any]) -> bool:
    """Some seed's difference is above 0 and another's below."""
    values = ci.get("per_seed", [])
    return any(v > 0 for v in values) and any(v < 0 for v in values)


def analyse(worlds, results: Sequence[Mapping[str, Any]], *, n_boot: int = B_DEFAULT,
            table: ArmTable = SHIPPED_TABLE) -> dict[str, Any]:
    """{"worlds": {name: {"role", "arms": {arm: summary}, "contrasts": {name: interval}}},
    "pooled": {pool: {contrast: interval}}, "pooled_percentile_bootstrap": {pool: {contrast: interval}},
    "intervals": {which method made which}, "contrasts": [{name, a, b, why, hypothesis}], "hypotheses",
    "headline"}; `table`: the arms and contrasts the study may run (an arms file's too). `n_boot`: the
    replicates of the percentile bootstrap reported beside."""
    by_world: dict[str, dict[str, list]] = {}
    for r in results:
        by_world.setdefault(r["world"], {}).setdefault(r["arm"], []).append(r)
    arms_present = {a for w in by_world.values() for a in w}
    contrasts = table.all_contrasts([a for a in table.order if a in arms_present])
    out: dict[str, Any] = {"worlds": {}, "pooled": {}, "pooled_percentile_bootstrap": {}, "n_boot": n_boot,
                           "intervals": {"world": WORLD_METHOD, "pooled": POOLED_METHOD,
                                         "pooled_percentile_bootstrap": f"percentile bootstrap over worlds, then "
                                         f"seeds and problems within levels, B={n_boot}, RNG seed {RNG_SEED}"},
                           "contrasts": [{"name": c.name, "a": c.a, "b": c.b, "why": c.why,
                                          "hypothesis": c.hypothesis} for c in contrasts]}
    matrices: dict[str, dict[str, tuple]] = {}
    for world in worlds:
        arms = by_world.get(world.name, {})
        matrices[world.name] = {a: arm_matrix(rows) for a, rows in arms.items()}
        entry = {"role": world.role, "read_before": world.read_before, "description": world.description,
                 "arms": {a: summarize_arm(arms[a]) for a in table.order if a in arms}, "contrasts": {}}
        for c in contrasts:
            if c.a in arms and c.b in arms:
                a, b = matrices[world.name][c.a], matrices[world.name][c.b]
                ma, mb, levels = _pair(a, b)
                entry["contrasts"][c.name] = (world_t_interval(ma, mb, levels).to_dict()
                                              | per_seed_differences(ma, mb, levels, paired_seeds(a, b)))
        out["worlds"][world.name] = entry
    for pool, member in POOLS.items():
        chosen = [w for w in worlds if member(w)]
        figures, beside = {}, {}
        for c in contrasts:
            data = [_pair(matrices[w.name][c.a], matrices[w.name][c.b]) for w in chosen
                    if c.a in matrices[w.name] and c.b in matrices[w.name]]
            if data:
                figures[c.name] = pooled_t_interval(data).to_dict()
                beside[c.name] = pooled_bootstrap_interval(data, n_boot=n_boot).to_dict()
        out["pooled"][pool], out["pooled_percentile_bootstrap"][pool] = figures, beside
    out["hypotheses"] = verdicts(out)
    out["headline"] = headline(out["hypotheses"])
    return out


def _verdict(ci: Mapping[str, Any] | None) -> str:
    if ci is None:
        return "n/a (no held-out world ran both arms)"
    return "supported" if ci["low"] > 0 else "contradicted" if ci["high"] < 0 else "undecided"


def verdicts(analysis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The protocol's decision rule: a hypothesis (a > b) is supported when the pooled 95% interval over the
    held-out worlds lies above 0, contradicted when it lies below 0, and undecided otherwise; with the same
    rule over the never-read worlds (the sensitivity check), the held-out worlds where the estimate is < 0, and
    those where the seeds' differences differ in sign.
    The intervals are `pooled`'s; the same rule on `pooled_percentile_bootstrap` (the study's first method)
    is recorded beside (`*_percentile_bootstrap`), and decides nothing."""
    rows = []
    old = analysis.get("pooled_percentile_bootstrap", {})
    for c in analysis["contrasts"]:
        if not c["hypothesis"]:
            continue
        ci = analysis["pooled"].get("held_out", {}).get(c["name"])
        unread = analysis["pooled"].get("held_out_unread", {}).get(c["name"])
        negative = [w for w, e in analysis["worlds"].items() if e["role"] == "held_out"
                    and e["contrasts"].get(c["name"], {"estimate": 0.0})["estimate"] < 0]
        disagree = [w for w, e in analysis["worlds"].items() if e["role"] == "held_out"
                    and seeds_disagree(e["contrasts"].get(c["name"], {}))]
        row = {"hypothesis": c["hypothesis"], "contrast": c["name"], "why": c["why"], "interval": ci,
               "verdict": _verdict(ci), "interval_unread": unread, "verdict_unread": _verdict(unread),
               "negative_in": negative, "seeds_disagree_in": disagree}
        if old:
            for key, pool in (("", "held_out"), ("_unread", "held_out_unread")):
                boot = old.get(pool, {}).get(c["name"])
                row[f"interval{key}_percentile_bootstrap"] = boot
                row[f"verdict{key}_percentile_bootstrap"] = _verdict(boot)
        rows.append(row)
    return rows


def headline(rows: Sequence[Mapping[str, Any]]) -> str:
    """The protocol's headline claim: H1 and H2 both supported (robust if also over the never-read worlds)."""
    primary = {r["hypothesis"]: r for r in rows if r["hypothesis"] in ("H1", "H2")}
    if len(primary) < 2:
        return "not decided: H1 and H2 need base, cuma_gated and ttrl_novote in at least one held-out world"
    if not all(r["verdict"] == "supported" for r in primary.values()):
        return "not made: H1 and H2 are not both supported"
    if all(r["verdict_unread"] == "supported" for r in primary.values()):
        return "made, robust: H1 and H2 supported, also over the never-read worlds"
    return "made, not robust: H1 and H2 supported, but not both over the never-read worlds alone"


__all__ = ["POOLS", "analyse", "arm_matrix", "headline", "paired_seeds", "per_seed_differences", "seeds_disagree",
           "summarize_arm", "verdicts"]
