"""The outputs of `cuma study`: study.json (everything), study.md (tables with intervals), forest.png (each
contrast's interval per world and pooled). The report names the interval methods it read (`intervals` of the
analysis) and shows the study's first pooled method, the percentile bootstrap over worlds, beside the t-interval
that decides."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.experiments.study_analysis import seeds_disagree
from agents.experiments.study_arms import ArmTable

PROTOCOL = "docs/study-protocol.md"
_ROOT = Path(__file__).resolve().parents[2]


def protocol_commit(root: Path = _ROOT, path: str = PROTOCOL) -> dict[str, Any]:
    """The commit that last changed the protocol file, and whether the file differs from it now ("unknown"
    outside a git checkout or before the file is committed)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], check=False, capture_output=True, text=True,
                              timeout=20)

    try:
        commit = git("log", "-1", "--format=%H", "--", path).stdout.strip() or "unknown"
        modified = bool(git("status", "--porcelain", "--", path).stdout.strip()) if commit != "unknown" else None
    except (OSError, subprocess.SubprocessError):
        commit, modified = "unknown", None
    return {"file": path, "commit": commit, "modified_since": modified}


def _ci(ci: Mapping[str, Any] | None) -> str:
    if ci is None:
        return ""
    mark = "**" if ci["low"] > 0 or ci["high"] < 0 else ""
    return f"{mark}{ci['estimate']:+.3f}{mark} [{ci['low']:+.3f}, {ci['high']:+.3f}]"


REANALYSIS = "docs/results/study/intervals-reanalysis.md"


def intervals_text(analysis: Mapping[str, Any]) -> str:
    """The line of study.md that says how the intervals were made (an analysis from before issue 27 had only
    the percentile bootstrap, and says so)."""
    methods = analysis.get("intervals")
    if methods is None:
        return (f"Intervals: 95% paired percentile bootstrap, B={analysis['n_boot']}, fixed RNG seed; problems "
                "resampled within levels and seeds with replacement; pooled over worlds hierarchically (worlds, "
                "then seeds and problems within each). Bold: the interval excludes 0.")
    return ("Intervals (95%, `agents/experiments/intervals.py`): per world a t-interval whose variance is each "
            "trained arm's seed-to-seed variance (Welch: the arms are separate runs) plus the problem-sampling "
            "variance of the paired per-problem difference within levels, with Satterthwaite's df; pooled over "
            "worlds, the t-interval over the worlds' estimates with k-1 df (worlds a random effect). The verdicts "
            "read these. Beside them, the study's first method: "
            f"{methods['pooled_percentile_bootstrap']} (table `Pooled`), which decides nothing. Why the methods "
            f"changed, and their measured coverage: `{REANALYSIS}`.{_one_world(analysis)} Bold: the interval "
            "excludes 0.")


def _one_world(analysis: Mapping[str, Any]) -> str:
    if len(analysis["worlds"]) != 1:
        return ""
    return (" One world here: a pooled figure is that world's own t-interval, and the percentile bootstrap beside "
            "it resamples that world's seeds and problems (within levels).")


def _pooled_table(analysis: Mapping[str, Any], pools: list[str]) -> list[str]:
    """Every pooled contrast under the t-interval and, beside it, the percentile bootstrap over worlds."""
    old = analysis.get("pooled_percentile_bootstrap")
    if not old or not pools:
        return []
    names = {"held_out": "held-out", "held_out_unread": "never read"}
    head = ["contrast", *[f"{names[p]}: {m}" for p in pools for m in ("t over worlds", "percentile bootstrap")]]
    out = ["", "## Pooled: the t-interval (decides) and the percentile bootstrap (the first method)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in analysis["contrasts"]:
        cells = [_ci(source[p].get(c["name"])) for p in pools for source in (analysis["pooled"], old)]
        if any(cells):
            out.append(f"| `{c['name']}` | " + " | ".join(cells) + " |")
    return out


def _arms_table(world: Mapping[str, Any]) -> list[str]:
    """Per arm: greedy pass@1 per evaluated level, its mean, the gain over the base, the share of greedy answers
    on the hardest levels (levels 4-5 where evaluated: where the bases leave questions unanswered), the budget."""
    first = next(iter(world["arms"].values()))
    levels = first.get("levels") or list(range(1, len(first["per_level"]) + 1))  # a study from before the key
    shown = [i for i, lv in enumerate(levels) if lv >= 4] or list(range(len(levels)))
    answers = " / ".join(f"L{levels[i]}" for i in shown)
    head = ["arm", "seeds", *[f"L{lv}" for lv in levels], "mean ± sd", "vs base [95% CI]", f"greedy answers {answers}",
            "steps", "train samples", "probe samples", "wall s"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm, s in world["arms"].items():
        vs = "" if arm == "base" else _ci(world["contrasts"].get(f"{arm} - base"))
        answered = " / ".join(f"{s['answered_per_level'][i]:.2f}" for i in shown)
        out.append(f"| {arm} | {s['n_seeds']} | {' | '.join(f'{v:.2f}' for v in s['per_level'])} "
                   f"| {s['mean']:.3f} ± {s['mean_sd']:.3f} | {vs} | {answered} | {s['samples'].get('steps', '')} "
                   f"| {s['samples']['train']} | {s['samples']['probe']} | {s['wall_s']:.0f} |")
    return out


def _seed_by_seed(ci: Mapping[str, Any]) -> str:
    seeds = ", ".join(f"s{s} {v:+.3f}" for s, v in zip(ci["seeds"], ci["per_seed"]))
    return seeds + (" (signs differ)" if seeds_disagree(ci) else "")


def _per_seed_lines(world: Mapping[str, Any], names: list[str]) -> list[str]:
    """The hypotheses' contrasts seed by seed in this world (with 2-3 seeds their variance is a guess)."""
    rows = [(n, world["contrasts"][n]) for n in names if "per_seed" in world["contrasts"].get(n, {})]
    if not rows:
        return []
    return ["", "Hypotheses' contrasts seed by seed: " + "; ".join(f"`{n}` {_seed_by_seed(ci)}" for n, ci in rows)
            + "."]


def budget_text(plan: Mapping[str, Any]) -> str:
    """How the trained arms were made comparable: equal steps, or equal generated completions."""
    budget = plan["budget"]
    if budget.get("kind", "equal_steps") == "equal_samples":
        per_world = sorted(set(plan.get("max_samples", {}).values()))
        return (f"Every trained arm stops at the same generated completions, training, probe and voted groups "
                f"counted ({', '.join(map(str, per_world))}: what {budget['steps']} steps of the shared batch generate "
                "without probes), so arms are compared at **equal samples**; an arm that probes or votes on more "
                "completions than it trains on takes fewer steps (column `steps`).")
    return (f"Every trained arm: {budget['steps']} optimizer steps from its world's base, the same batch (prompts x "
            "group), so arms are compared at **equal steps**; the agreement-gated arms also generate probe groups "
            "(column `probe samples`).")


def format_markdown(study: Mapping[str, Any]) -> str:
    analysis, plan = study["analysis"], study["plan"]
    budget, protocol = plan["budget"], study["protocol"]
    worlds = list(analysis["worlds"])
    changed = {True: " (the file has changed since: the runs do not follow the committed protocol)",
               False: "", None: ""}[protocol["modified_since"]]
    out = ["# `cuma study`: the label-free claim over worlds, with 95% intervals", "",
           f"Protocol: `{protocol['file']}` at commit `{protocol['commit']}`{changed}.",
           (f"Metric: final greedy pass@1 on the `{plan['split']}` split ({budget['eval_n_per_level']} problems per "
           f"level at most), per level and its mean over levels. {budget_text(plan)}"),
           intervals_text(analysis), ""]
    out += ["## Hypotheses (decision rule: pooled over the held-out worlds, the 95% interval above 0)", "",
            f"Headline claim (H1 and H2): **{analysis['headline']}**.", "",
            ("| hypothesis | contrast | pooled held-out | verdict | pooled, never read | verdict | estimate < 0 in "
             "| seeds differ in sign in | percentile bootstrap: held-out, never read |"),
            "|---|---|---|---|---|---|---|---|---|"]
    for h in analysis["hypotheses"]:
        boot = " ; ".join(f"{_ci(h.get(f'interval{k}_percentile_bootstrap'))} {h[f'verdict{k}_percentile_bootstrap']}"
                          for k in ("", "_unread")) if "verdict_percentile_bootstrap" in h else ""
        out.append(f"| {h['hypothesis']} | `{h['contrast']}`: {h['why']} | {_ci(h['interval'])} | {h['verdict']} "
                   f"| {_ci(h['interval_unread'])} | {h['verdict_unread']} | {', '.join(h['negative_in']) or '-'} "
                   f"| {', '.join(h.get('seeds_disagree_in', [])) or '-'} | {boot} |")
    out += ["", "## Contrasts (difference in mean greedy pass@1, 95% CI)", ""]
    pools = [p for p in ("held_out", "held_out_unread") if analysis["pooled"].get(p)]
    head = ["contrast", *[f"{w} ({analysis['worlds'][w]['role']})" for w in worlds],
            *[{"held_out": "pooled held-out", "held_out_unread": "pooled, never read"}[p] for p in pools]]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in analysis["contrasts"]:
        cells = [_ci(analysis["worlds"][w]["contrasts"].get(c["name"])) for w in worlds]
        cells += [_ci(analysis["pooled"][p].get(c["name"])) for p in pools]
        if any(cells):
            out.append(f"| `{c['name']}` | " + " | ".join(cells) + " |")
    out += _pooled_table(analysis, pools)
    for name, world in analysis["worlds"].items():
        base = study.get("bases", {}).get(name, {})
        sha = f"; base weights `{base['weights_sha256'][:16]}` ({base.get('source')})" if base.get("weights_sha256") \
            else ""
        read = ", a variant read while designing" if world["read_before"] else ""
        out += ["", f"## World `{name}` ({world['role']}{read})", "", f"{world['description']}{sha}", "",
                *_arms_table(world)]
        out += _per_seed_lines(world, [h["contrast"] for h in analysis["hypotheses"]])
        if any(s.get("matches_trainer_eval") is False for s in world["arms"].values()):
            out.append("\nWARNING: a cell's per-problem greedy accuracy differs from its trainer's final evaluation.")
    out += ["", "## Arms", ""]
    table = ArmTable.from_dict(plan.get("arms_file"))  # the shipped arms, and an arms file's
    for arm in plan["arms"]:
        spec = table.arm(arm)
        extra = f" + `{' '.join(spec.overrides)}`" if spec.overrides else ""
        origin = "; from the arms file" if table.is_added(arm) else ""
        out.append(f"- `{arm}` (method `{spec.method}`{extra}; labels in loop: "
                   f"{'ground truth' if spec.labels == 'reward' else 'none'}{origin}): {spec.description}")
    return "\n".join(out) + "\n"


def plot_forest(path: Path, analysis: Mapping[str, Any]) -> Path:
    """forest.png: one row per contrast; per world its interval (a colour per world), pooled in black."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = list(analysis["worlds"])
    pools = [p for p in ("held_out", "held_out_unread") if analysis["pooled"].get(p)]
    series = [(w, analysis["worlds"][w]["contrasts"]) for w in worlds] + \
             [(f"pooled {p}", analysis["pooled"][p]) for p in pools]
    rows = [c["name"] for c in analysis["contrasts"] if any(c["name"] in s for _, s in series)]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(9, 1.5 + max(1, len(rows)) * (0.2 + 0.07 * len(series))))
    step = 0.7 / max(1, len(series))

    def offset(k: int) -> float:  # the series side by side on a row
        return (k - (len(series) - 1) / 2) * step

    for k, (label, figures) in enumerate(series):
        pooled = label.startswith("pooled")
        ys, xs, lows, highs = [], [], [], []
        for i, name in enumerate(rows):
            if name in figures:
                ci = figures[name]
                ys.append(len(rows) - i - offset(k))
                xs.append(ci["estimate"])
                lows.append(ci["estimate"] - ci["low"])
                highs.append(ci["high"] - ci["estimate"])
        if ys:
            ax.errorbar(xs, ys, xerr=[lows, highs], fmt="D" if pooled else "o", ms=6 if pooled else 4,
                        color="black" if pooled else colors[k % len(colors)], lw=2 if pooled else 1,
                        alpha=1.0 if pooled and k == len(series) - len(pools) else 0.6 if pooled else 0.9,
                        capsize=2, label=label)
    ax.axvline(0, color="gray", ls="--", lw=1)
    if not rows:
        ax.text(0.5, 0.5, "no contrast: the study ran fewer than two arms", ha="center", transform=ax.transAxes)
    ax.set_yticks([len(rows) - i for i in range(len(rows))], rows, fontsize=8)
    ax.set_ylim(0.5, max(1, len(rows)) + 0.5)
    ax.set_xlabel("difference in final mean greedy pass@1 (95% t-interval; pooled: t over worlds)"
                  if "intervals" in analysis else "difference in final mean greedy pass@1 (95% paired bootstrap CI)")
    ax.set_title("cuma study: contrasts per world and pooled over held-out worlds", fontsize=10)
    if rows:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out: Path, study: Mapping[str, Any]) -> dict[str, Path]:
    paths = {"json": out / "study.json", "md": out / "study.md", "png": out / "forest.png"}
    paths["json"].write_text(json.dumps(study, indent=1) + "\n")
    paths["md"].write_text(format_markdown(study))
    plot_forest(paths["png"], study["analysis"])
    return paths


__all__ = ["PROTOCOL", "REANALYSIS", "format_markdown", "intervals_text", "plot_forest", "protocol_commit",
           "write_outputs"]
