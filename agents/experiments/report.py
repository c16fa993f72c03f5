"""The outputs of `cuma reproduce`: results.json, the Table-2-style markdown table, one comparison PNG.

results.json: {"<method>": {"mean_acc", "per_level" (5), "pass1_t06", "collapse", "wall_s", "peak_mean_acc",
"peak_per_level", "maj", "labels", "n_seeds"}}; `mean_acc` is the final greedy pass@1 averaged over levels.
With several seeds every number is the mean over seeds, `mean_acc_std` their sample std, and "seeds" lists
the per-seed records (each with its "seed").
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.experiments.arms import METHOD_ORDER, METHODS
from cuma_env.problems import LEVELS

GAIN_GOAL = 0.03     # the project's goal (the paper's label-free gain): cuma_gated >= 3 points of mean greedy
                     # accuracy above the base (and above TTRL), with no labels in its loop
COLLAPSE_SHARE = 0.5  # final held-out greedy answers: one answer for >= half the prompts = collapsed
_KEYS = ("mean_acc", "pass1_t06", "collapse", "wall_s", "peak_mean_acc", "maj")
_LIST_KEYS = ("per_level", "peak_per_level")


def aggregate(records: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per method: the mean over its seeds (plus the per-seed records when there are several)."""
    by_method: dict[str, list[Any]] = {}
    for r in records:
        by_method.setdefault(r.method, []).append(r)
    results: dict[str, dict[str, Any]] = {}
    for method in sorted(by_method, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99):
        runs = sorted(by_method[method], key=lambda r: r.seed)
        entry: dict[str, Any] = {k: round(statistics.fmean(getattr(r, k) for r in runs), 4) for k in _KEYS}
        for key in _LIST_KEYS:
            entry[key] = [round(statistics.fmean(vals), 4) for vals in zip(*(getattr(r, key) for r in runs))]
        entry["labels"] = METHODS[method].labels if method in METHODS else "?"
        entry["n_seeds"] = len(runs)
        if len(runs) > 1:
            entry["mean_acc_std"] = round(statistics.stdev(r.mean_acc for r in runs), 4)
            entry["seeds"] = [{"seed": r.seed, **{k: round(getattr(r, k), 4) for k in _KEYS},
                               **{k: [round(v, 4) for v in getattr(r, k)] for k in _LIST_KEYS}} for r in runs]
        results[method] = entry
    return results


def goal_checks(results: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, bool | None]]:
    """The project's targets (TTRL ends below the base, the oracle above it, cuma_gated above both and at least
    `GAIN_GOAL` above the base), judged on the final mean greedy accuracy (None: an arm is missing)."""
    def acc(m: str) -> float | None:
        return results[m]["mean_acc"] if m in results else None

    base, ttrl, oracle, gated = acc("base"), acc("ttrl"), acc("oracle"), acc("cuma_gated")
    checks: list[tuple[str, bool | None]] = []
    checks.append(("TTRL collapses or ends below the base",
                   None if base is None or ttrl is None else
                   results["ttrl"]["collapse"] >= COLLAPSE_SHARE or ttrl < base))
    checks.append(("oracle (ground-truth GRPO) ends above the base",
                   None if base is None or oracle is None else oracle > base))
    checks.append(("cuma_gated ends above the base and above TTRL (no labels in its loop)",
                   None if base is None or ttrl is None or gated is None else gated > base and gated > ttrl))
    checks.append((f"cuma_gated ends at least {GAIN_GOAL:.2f} above the base (the paper's label-free gain)",
                   None if base is None or gated is None else gated - base >= GAIN_GOAL - 1e-9))
    return checks


def _measured_text(value: float) -> str:
    """NaN: not measured (a greedy-only evaluation, `eval.samples: 0`)."""
    return "—" if math.isnan(value) else f"{value:.3f}"


def format_table(results: Mapping[str, Mapping[str, Any]], info: Mapping[str, Any] | None = None) -> str:
    base = results.get("base", {}).get("mean_acc")
    head = ("| method | labels in loop | L1 | L2 | L3 | L4 | L5 | mean final | Δ vs base | mean peak "
            "| pass@1 T=0.6 | collapse | wall s |")
    lines = [head, "|" + "---|" * 13]
    for method, r in results.items():
        cells = [f"{f:.2f} ({p:.2f})" for f, p in zip(r["per_level"], r["peak_per_level"])]
        cells += [""] * (5 - len(cells))
        mean = f"**{r['mean_acc']:.3f}**" + (f" ± {r['mean_acc_std']:.3f}" if "mean_acc_std" in r else "")
        delta = "" if base is None or method == "base" else f"{r['mean_acc'] - base:+.3f}"
        collapse = f"{r['collapse']:.2f}" + (" COLLAPSED" if r["collapse"] >= COLLAPSE_SHARE else "")
        labels = "—" if method == "base" else ("ground truth" if r.get("labels") == "reward" else "none")
        lines.append(f"| {method} | {labels} | {' | '.join(cells)} | {mean} | {delta} | {r['peak_mean_acc']:.3f} "
                     f"| {_measured_text(r['pass1_t06'])} | {collapse} | {r['wall_s']:.0f} |")
    out = ["# `cuma reproduce`: held-out accuracy on the procedural arith test split", ""]
    if info:
        b = info.get("budget", {})
        total = info.get("total_wall_s", 0)
        arms = sum(r.get("wall_s", 0) for r in info.get("records", []))
        # arms reused from an earlier invocation took their time then: say so rather than report a re-render's
        reused = (f" for this invocation, which reused finished arms (theirs add up to {arms:.0f} s)"
                  if arms > total else "")
        out.append(f"Seeds {info.get('seeds')}; {b.get('steps')} optimizer steps per arm (same batch, same base); "
                   f"held-out evaluation every {b.get('eval_every') or 'start/end'} steps; total wall time "
                   f"{total:.0f} s{reused}.")
        base = info.get("base") or {}
        if base.get("weights_sha256"):
            what = ("the published weights, the same on every machine" if base.get("source") == "published" else
                    "trained on this machine: the same config trains into other weights on a CPU with other float "
                    "kernels, so compare this hash before comparing numbers")
            out.append(f"Base: `{base.get('path')}`, a tiny base with weights sha256 `{base['weights_sha256'][:16]}` "
                       f"({what}).")
        out.append("")
    out += lines
    out += ["", "Per level: final greedy pass@1 (peak over the evaluations). `mean final` = final greedy pass@1 "
            "averaged over the 5 levels (± sample std over seeds); `mean peak` = best mean over the evaluations "
            "(step 0 included, so it is never below the base's). `pass@1 T=0.6` = sampled pass@1, mean over "
            "levels. `collapse` = share of the most common final greedy answer over all held-out prompts "
            f"(>= {COLLAPSE_SHARE} marked COLLAPSED). Labels: only `oracle` reads ground truth in its training "
            "loop; every arm's held-out evaluation uses the test split's answers.", ""]
    out += ["Targets (final mean greedy):"]
    for text, ok in goal_checks(results):
        out.append(f"- {text}: {'n/a' if ok is None else 'yes' if ok else 'NO'}")
    out += ["", "Arms:"]
    for method in results:
        spec = METHODS.get(method)
        if spec is not None:
            out.append(f"- `{method}`: {spec.description}" + (f" (preset `{spec.preset}`)" if spec.preset else ""))
    return "\n".join(out) + "\n"


def plot(path: Path, results: Mapping[str, Mapping[str, Any]], records: Sequence[Any]) -> Path:
    """comparison.png: final/peak mean per method, held-out mean over steps, per-level final accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {m: colors[i % len(colors)] for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    ax = axes[0]
    xs = range(len(methods))
    finals = [results[m]["mean_acc"] for m in methods]
    errs = [results[m].get("mean_acc_std", 0.0) for m in methods]
    ax.bar(xs, finals, yerr=errs, color=[color[m] for m in methods], alpha=0.85, capsize=3, label="final")
    ax.plot(xs, [results[m]["peak_mean_acc"] for m in methods], "k_", ms=18, mew=2, label="peak")
    if "base" in results:
        ax.axhline(results["base"]["mean_acc"], color="gray", ls="--", lw=1, label="base")
    for x, m in zip(xs, methods):
        if results[m]["collapse"] >= COLLAPSE_SHARE:
            ax.text(x, finals[x] + 0.01, "collapsed", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(list(xs), methods, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("held-out greedy pass@1 (mean over levels)")
    ax.set_title("final and peak accuracy per method", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1]
    curves: dict[str, dict[float, list[float]]] = {}
    for r in records:
        for step, value in r.curve:
            curves.setdefault(r.method, {}).setdefault(step, []).append(value)
    for m in methods:
        if m == "base":
            ax.axhline(results["base"]["mean_acc"], color="gray", ls="--", lw=1, label="base")
            continue
        points = sorted(curves.get(m, {}).items())
        if points:
            ax.plot([p[0] for p in points], [statistics.fmean(p[1]) for p in points], "-o", ms=3, color=color[m],
                    label=m)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out greedy pass@1 (mean over levels)")
    ax.set_title("held-out accuracy during training (mean over seeds)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        levels = results[m]["per_level"]
        ax.bar([lv + (i - len(methods) / 2 + 0.5) * width for lv in range(1, len(levels) + 1)], levels, width,
               color=color[m], label=m)
    ax.set_xticks(list(LEVELS), [f"L{lv}" for lv in LEVELS])
    ax.set_ylabel("final held-out greedy pass@1")
    ax.set_title("final accuracy per level", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("cuma reproduce: label-free RL on the tiny weak base (same base, seeds and step budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_outputs(out: Path, results: Mapping[str, Any], records: Sequence[Any], info: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "run_info.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    (out / "results.md").write_text(format_table(results, info))
    plot(out / "comparison.png", results, records)
