"""The first study's verdicts under its first intervals (percentile bootstrap) and the t-intervals that replaced
them (issue 27), and both methods' coverage on simulated studies: writes docs/results/study/intervals-reanalysis.md.

    OMP_NUM_THREADS=1 python benchmarks/study_intervals.py   # both parts: ~5 min of one core, deterministic
    python benchmarks/study_intervals.py --studies 300 --bootstrap-studies 40 --out /tmp/r.md   # a quick look

Reads the committed cells (docs/results/study/cells/*/*/per_problem.json) and the plan in study.json; trains
nothing, builds no base, and writes neither study.json nor study.md (the study's published record).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "results" / "study"
OUT = STUDY / "intervals-reanalysis.md"
COMMAND = "OMP_NUM_THREADS=1 python benchmarks/study_intervals.py"


def load_study(root: Path = STUDY):
    """(worlds, per-cell results, n_boot, the published analysis) of a finished study directory."""
    from agents.experiments.worlds import World

    study = json.loads((root / "study.json").read_text())
    worlds = tuple(World(name=w["name"], role=w["role"], base=w["base"], seeds=w["seeds"],
                         read_before=w["read_before"], description=w["description"]) for w in study["plan"]["worlds"])
    order = {c["cell"]: i for i, c in enumerate(study["cells"])}
    results = [json.loads(p.read_text()) for p in (root / "cells").glob("*/*/per_problem.json")]
    results.sort(key=lambda r: order[r["cell"]])
    return worlds, results, study["plan"]["n_boot"], study["analysis"]


def _ci(ci) -> str:
    return "" if ci is None else f"{ci['estimate']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"


def verdict_section(worlds, results, n_boot, published) -> list[str]:
    from agents.experiments.study_analysis import POOLS, analyse, headline

    analysis = analyse(worlds, results, n_boot=n_boot)
    same = all(analysis["pooled_percentile_bootstrap"][p][c] == {k: v for k, v in published["pooled"][p][c].items()}
               | {"df": None, "method": "percentile bootstrap over worlds"}
               for p in published["pooled"] for c in published["pooled"][p])
    old_rows = [{**h, "verdict": h["verdict_percentile_bootstrap"],
                 "verdict_unread": h["verdict_unread_percentile_bootstrap"]} for h in analysis["hypotheses"]]
    pools = {p: [w.name for w in worlds if member(w)] for p, member in POOLS.items()}
    out = ["## The first study's verdicts under both methods", "",
           (f"Pooled over the held-out worlds ({len(pools['held_out'])}: {', '.join(pools['held_out'])}) and over "
            f"the never-read ones ({len(pools['held_out_unread'])}: {', '.join(pools['held_out_unread'])}); decision "
            "rule unchanged (supported: the 95% interval above 0). "
            f"Percentile bootstrap: B={n_boot}, RNG seed 18, as published; its intervals here are "
            + ("**identical to study.json's**." if same else "NOT identical to study.json's (see the code).")),
           "", ("| hypothesis | contrast | held-out: percentile bootstrap | verdict | held-out: t over worlds "
                f"({len(pools['held_out']) - 1} df) | verdict | never read: percentile bootstrap | verdict | never "
                f"read: t over worlds ({len(pools['held_out_unread']) - 1} df) | verdict |"),
           "|---|---|---|---|---|---|---|---|---|---|"]
    for h in analysis["hypotheses"]:
        out.append(f"| {h['hypothesis']} | `{h['contrast']}` | {_ci(h['interval_percentile_bootstrap'])} "
                   f"| {h['verdict_percentile_bootstrap']} | {_ci(h['interval'])} | {h['verdict']} "
                   f"| {_ci(h['interval_unread_percentile_bootstrap'])} | {h['verdict_unread_percentile_bootstrap']} "
                   f"| {_ci(h['interval_unread'])} | {h['verdict_unread']} |")
    changed = [f"{h['hypothesis']} {where}: {h[f'verdict{key}_percentile_bootstrap']} -> {h[f'verdict{key}']}"
               for h in analysis["hypotheses"] for key, where in (("", "held-out"), ("_unread", "never read"))
               if h[f"verdict{key}_percentile_bootstrap"] != h[f"verdict{key}"]]
    out += ["", f"Headline claim (H1 and H2), percentile bootstrap: **{headline(old_rows)}**; t-intervals: "
            f"**{analysis['headline']}**. Verdicts that change (bootstrap -> t): "
            f"{'; '.join(changed) if changed else 'none'}.", "",
            "### Per world (the hypotheses' contrasts): the published paired bootstrap and the t-interval", "",
            "| contrast | " + " | ".join(w.name for w in worlds if w.role == "held_out") + " |",
            "|---|" + "---|" * sum(w.role == "held_out" for w in worlds)]
    for h in analysis["hypotheses"]:
        cells = []
        for w in worlds:
            if w.role != "held_out":
                continue
            old = published["worlds"][w.name]["contrasts"].get(h["contrast"])
            new = analysis["worlds"][w.name]["contrasts"].get(h["contrast"])
            cells.append(f"{_ci(old)} / [{new['low']:+.3f}, {new['high']:+.3f}] df {new['df']}" if new else "")
        out.append(f"| `{h['contrast']}` | " + " | ".join(cells) + " |")
    out += ["", "Each cell: estimate [bootstrap interval] / [t-interval] with its Satterthwaite df."]
    return out


def coverage_section(studies: int, bootstrap: int, bootstrap_studies: int, worlds=(3, 5, 12)) -> list[str]:
    from agents.experiments.interval_coverage import REGIME_TEXT, compare

    rows = compare(worlds, studies, bootstrap=bootstrap, bootstrap_studies=bootstrap_studies)
    out = ["## Coverage on simulated studies (nominal 95%)", "",
           ("`agents/experiments/interval_coverage.py`: studies with the real layout (5 levels of 26, 187, 400, "
            "400, 400 test problems, 3 seeds per trained arm) and world-, seed- and problem-level effects fitted "
            "to the first study (its docstring). Per regime: " + "; ".join(f"**{k}**: {v}" for k, v in
                                                                              REGIME_TEXT.items()) + "."),
           "", (f"t and Hartung-Knapp (HK): {studies} studies per row; the percentile bootstrap (B={bootstrap}, the "
                f"same resampling as bootstrap.py, drawn vectorised): the first {bootstrap_studies}. Per world: "
                "every world of those studies. Width: mean interval width."), "",
           "| regime | worlds | pooled: t over worlds (adopted) | pooled: HK | pooled: percentile bootstrap "
           "| per world: t, Satterthwaite (adopted) | per world: percentile bootstrap | mu | SD of world estimates |",
           "|---|---|---|---|---|---|---|---|---|"]

    def cell(row, name):
        r = row.get(name)
        return f"{100 * r['coverage']:.1f}% (width {r['width']:.3f}, n={r['n']})" if r else ""

    for r in rows:
        out.append(f"| {r['regime']} | {r['worlds']} | {cell(r, 'pooled t')} | {cell(r, 'pooled hk')} "
                   f"| {cell(r, 'pooled bootstrap')} | {cell(r, 'world t')} | {cell(r, 'world bootstrap')} "
                   f"| {r['mu']:.3f} | {r['world_estimate_sd']:.3f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per row (t, HK)")
    parser.add_argument("--bootstrap-studies", type=int, default=200, help="of which the bootstrap runs on")
    parser.add_argument("--bootstrap", type=int, default=400, help="bootstrap replicates in the simulation")
    args = parser.parse_args(argv)
    worlds, results, n_boot, published = load_study()
    text = ["# The study's intervals, old and new (issue 27)", "",
            ("The first study (`study.md`) decided with percentile bootstrap intervals: per world over seeds and "
             "problems, pooled over worlds then within them. With 3 seeds per arm and 3-5 worlds they are too "
             "narrow (below). The analysis now uses t-intervals (`agents/experiments/intervals.py`, whose "
             "docstring says why): per world, each trained arm's seed-to-seed variance (Welch) plus the "
             "problem-sampling variance, Satterthwaite df; pooled, the t-interval over the worlds' estimates "
             "with k-1 df. `study.json` and `study.md` stay as published; this file re-reads their cells."), "",
            f"Regenerate: `{COMMAND}` (add `--out FILE` to write elsewhere).", ""]
    text += verdict_section(worlds, results, n_boot, published)
    text += [""] + coverage_section(args.studies, args.bootstrap, args.bootstrap_studies)
    args.out.write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
