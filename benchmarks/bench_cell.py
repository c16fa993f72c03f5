"""One real `cuma study` cell run the old way (`run_cell(reuse=False)`: the trainer computes its start evaluation,
evaluates every `eval_every` steps, the cell evaluates the saved model again) against the new way (the world's
start evaluation reused, the per-problem result read from the trainer's final greedy pass, and mid-run
evaluations dropped: `eval.every=0`), alternating in one process, with where a cell's time goes.

    OMP_NUM_THREADS=1 python benchmarks/bench_cell.py [--arm cuma_gated --steps 4 --n-per-level 400 --rounds 3]
        [--old-eval-every E] [--new-eval-every 0] [--new-eval-samples 0] [--new-compact-decode]

Each round trains the cell from scratch both ways (in turn first, so that machine load hits both alike) on the
tiny base with the study's budget (`study_budget`) but `--steps` steps; the first round is a warm-up (imports;
the new way's first cell computes and stores the start evaluation, as the first cell of each seed of a study
world does), the others are timed.
Mid-run evaluations: `--old-eval-every` / `--new-eval-every` are `eval_every` at the study's scale
(`--project-steps` steps; the old way's default: `study_budget`'s, 0), scaled to `--steps` so that a cell makes as
many mid-run evaluations as at that scale: E -> max(1, round(E * steps / project_steps)), 0 stays 0 (30 at 120
steps: evaluations at 30, 60, 90; at --steps 8: every 2, at 2, 4, 6).
Printed: the time per part (medians of the timed rounds; the mid-run evaluations a part of their own), the
measured ratio old / new, and the ratio projected to `--project-steps` steps from the measured parts: the
training steps at the old way's seconds per step, each way's mid-run evaluations at its own measured seconds per
evaluation times the number it makes at that scale, and the start evaluation computed once per
`--cells-per-seed` cells (the design world's 10 trained arms). Each round also checks that both ways give
identical final per-problem results, final evaluation (eval.csv's last step) and training metrics.
`--new-eval-samples 0`: the new way's trainer evaluations are greedy only (`eval.samples=0`, study 2's declared
cell setting); the final evaluations are then compared on what both measured (greedy, n, collapse), and the
projection charges the new way the old way's (sampled) start evaluation, so it errs against the new way.
`--new-compact-decode`: the new way's training collection drops finished rows (`rollout.compact_decode=true`),
which samples other completions (not bit-identical by design): the rounds then check nothing but that both ways
finished, and the timings compare the same work in kind, not the same tokens.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PARTS = ("model load", "trainer setup", "start evaluation", "collect (no probes)", "probes", "learn",
         "mid-run evaluations", "final evaluation", "checkpoints + model", "report", "cell evaluation", "other")
WITHIN = ("greedy passes", "prompt rendering")  # parts of the evaluations (and the trainer setup's prompt check)
# (module, class or "", function, part): what the clock wraps; part None: an evaluation, named by its order
WRAPPED = (
    ("agents.policy", "", "build_policy", "model load"),
    ("agents.trainer", "Trainer", "build", "trainer setup"),
    ("agents.evaluation", "", "evaluate_heldout", None),
    ("agents.rollout", "Rollout", "collect", "collect (no probes)"),
    ("agents.learner", "Learner", "step", "learn"),
    ("agents.trainer", "Trainer", "_save", "checkpoints + model"),
    ("agents.trainer", "Trainer", "_save_model", "checkpoints + model"),
    ("agents.run_outputs", "", "write_report", "report"),
    ("agents.experiments.study_cells", "", "evaluate_model", "cell evaluation"),
    ("agents.experiments.study_cells", "", "_from_trainer", "cell evaluation"),
    ("agents.evaluation", "", "_greedy_answers", "greedy passes"),
    ("agents.evaluation", "", "_prompts", "prompt rendering"),
)


class Clock:
    """Seconds per part of one cell, from wrappers around the functions a cell calls."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.evaluations: list[float] = []

    def wrap(self, owner, name: str, part: str | None) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                if part is None:
                    self.evaluations.append(spent)
                else:
                    self.spent[part] += spent

        setattr(owner, name, timed)

    def install(self) -> None:
        import agents.rollout as rollout

        for module, attribute, name, part in WRAPPED:
            owner = importlib.import_module(module)
            self.wrap(getattr(owner, attribute) if attribute else owner, name, part)
        make_probe = rollout.make_probe

        def timed_probes(*args, **kwargs):
            probe = make_probe(*args, **kwargs)

            def timed(*a, **k):
                start = time.perf_counter()
                try:
                    return probe(*a, **k)
                finally:
                    self.spent["probes"] += time.perf_counter() - start
            return timed

        rollout.make_probe = timed_probes

    def cell(self, run, *args, **kwargs) -> tuple[dict[str, float], object]:
        """Run one cell (`run(*args, **kwargs)`), return its parts and its result."""
        self.spent.clear()
        self.evaluations.clear()
        start = time.perf_counter()
        result = run(*args, **kwargs)
        total = time.perf_counter() - start
        parts = dict(self.spent)
        parts["trainer setup"] = parts.get("trainer setup", 0.0) - parts.get("model load", 0.0)
        parts["model load"] = parts.get("model load", 0.0)
        parts["collect (no probes)"] = parts.get("collect (no probes)", 0.0) - parts.get("probes", 0.0)
        parts["start evaluation"] = self.evaluations[0] if self.evaluations else 0.0
        parts["mid-run evaluations"] = sum(self.evaluations[1:-1])
        parts["final evaluation"] = self.evaluations[-1] if len(self.evaluations) > 1 else 0.0
        parts["evaluations"] = len(self.evaluations)
        parts["other"] = total - sum(parts.get(p, 0.0) for p in PARTS if p != "other")
        parts["total"] = total
        return {p: parts.get(p, 0.0) for p in (*PARTS, "total", *WITHIN, "evaluations")}, result


def same_results(old_out: Path, old: dict, new_out: Path, new: dict, *, greedy_only: bool = False) -> bool:
    """Identical final per-problem results, final evaluation (eval.csv's rows at the last step) and training
    metrics (times aside); the mid-run evaluations the ways may differ in are not compared, nor (`greedy_only`:
    one way did not sample) the sampled columns."""
    unmeasured = {"seconds", "pass1", "maj", "parse_rate"} if greedy_only else {"seconds"}
    from agents.run_outputs import TIME_COLUMNS, read_csv

    def rows(out: Path, result: dict) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS}
                for r in read_csv(out / result["run_dir"] / "metrics.csv")]

    def final_eval(out: Path, result: dict) -> list[dict]:
        evals = read_csv(out / result["run_dir"] / "eval.csv")
        return [{k: v for k, v in r.items() if k not in unmeasured} for r in evals if r["step"] == evals[-1]["step"]]

    return (old["levels"] == new["levels"] and old["collapse"] == new["collapse"]
            and rows(old_out, old) == rows(new_out, new) and final_eval(old_out, old) == final_eval(new_out, new))


def scaled_every(every: int, steps: int, full: int) -> int:
    """`every` (eval_every at `full` steps) at `steps` steps, keeping the number of mid-run evaluations."""
    return 0 if every == 0 else max(1, round(every * steps / full))


def mid_runs(every: int, steps: int) -> int:
    """The trainer's evaluations strictly between the start and the end (agents/trainer.py)."""
    return 0 if every == 0 else (steps - 1) // every


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arm", default="cuma_gated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=4, help="training steps per cell (the study's: 120)")
    parser.add_argument("--n-per-level", type=int, default=400, help="held-out problems per level (the study's)")
    parser.add_argument("--rounds", type=int, default=3, help="alternation rounds (the first is a warm-up)")
    parser.add_argument("--project-steps", type=int, default=120)
    parser.add_argument("--old-eval-every", type=int, default=None,
                        help="the old way's eval_every at --project-steps steps, scaled to --steps (default: "
                             "study_budget's)")
    parser.add_argument("--new-eval-every", type=int, default=0,
                        help="the new way's eval_every at --project-steps steps, scaled to --steps (default 0: "
                             "the override eval.every=0, no mid-run evaluation)")
    parser.add_argument("--new-eval-samples", type=int, default=None,
                        help="the new way's eval.samples (default: the study's; 0: greedy-only evaluations)")
    parser.add_argument("--new-compact-decode", action="store_true",
                        help="the new way's training drops finished rows (rollout.compact_decode=true)")
    parser.add_argument("--cells-per-seed", type=int, default=10,
                        help="trained cells sharing one start evaluation (a world's trained arms)")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import torch

    torch.set_num_threads(1)
    from dataclasses import replace

    from agents.experiments.reproduce import _quiet_transformers
    from agents.experiments.study import study_budget
    from agents.experiments.study_cells import Cell, run_cell
    from agents.experiments.worlds import load_worlds

    if args.old_eval_every is None:
        args.old_eval_every = study_budget().eval_every
    if min(args.old_eval_every, args.new_eval_every) < 0 or args.steps < 1 or args.project_steps < 1:
        parser.error("--old-eval-every and --new-eval-every must be >= 0, --steps and --project-steps >= 1")
    if args.new_eval_samples is not None and args.new_eval_samples < 0:
        parser.error(f"--new-eval-samples must be >= 0, got {args.new_eval_samples}")
    for way, e in (("old", args.old_eval_every), ("new", args.new_eval_every)):
        here = scaled_every(e, args.steps, args.project_steps)
        if mid_runs(e, args.project_steps) and not mid_runs(here, args.steps):
            parser.error(f"--{way}-eval-every {e}: no mid-run evaluation at --steps {args.steps} to measure")
    _quiet_transformers()
    clock = Clock()
    clock.install()
    world = next(w for w in load_worlds() if w.role == "design")
    cell = Cell(world, args.arm, args.seed)
    study = study_budget(steps=args.steps, n_per_level=args.n_per_level)
    every = {"old": args.old_eval_every, "new": args.new_eval_every}  # at the study's scale
    budgets = {way: replace(study, eval_every=scaled_every(e, args.steps, args.project_steps))
               for way, e in every.items()}
    extra = ([f"eval.samples={args.new_eval_samples}"] if args.new_eval_samples is not None else []) + \
        (["rollout.compact_decode=true"] if args.new_compact_decode else [])
    budgets["new"] = replace(budgets["new"], overrides=(*budgets["new"].overrides, *extra))
    root = Path(tempfile.mkdtemp(prefix="bench-cell-"))
    timed: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    identical = []
    try:
        for r in range(args.rounds):
            results = {}
            for way in (("old", "new") if r % 2 == 0 else ("new", "old")):
                out = root / way
                shutil.rmtree(out / "cells", ignore_errors=True)  # trained again; start-evaluations/ stays
                parts, results[way] = clock.cell(run_cell, cell, out, budgets[way], "tiny", reuse=way == "new")
                expected = mid_runs(budgets[way].eval_every, args.steps) + 2
                if parts["evaluations"] != expected:
                    raise SystemExit(f"{way}: {parts['evaluations']:.0f} evaluations, expected {expected}")
                if r > 0:
                    timed[way].append(parts)
                print(f"round {r}{' (warm-up)' if r == 0 else ''}: {way} {parts['total']:.1f} s", flush=True)
            identical.append(args.new_compact_decode or same_results(
                root / "old", results["old"], root / "new", results["new"], greedy_only=args.new_eval_samples == 0))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not timed["old"]:
        print("no timed round (--rounds 1 is the warm-up only)")
        return 0
    median = {way: {p: statistics.median(t[p] for t in runs) for p in (*PARTS, "total", *WITHIN)}
              for way, runs in timed.items()}
    mids = {way: mid_runs(b.eval_every, args.steps) for way, b in budgets.items()}
    print(f"\n{args.arm} seed {args.seed}: {args.steps} steps, {args.n_per_level} held-out problems per level, "
          f"{len(timed['old'])} timed round(s); seconds (medians), one thread")
    if extra:
        print(f"new: {' '.join(extra)}")
    print("; ".join(f"{way}: eval_every {every[way]} at {args.project_steps} steps, {budgets[way].eval_every} here "
                    f"({mids[way]} mid-run evaluation(s))" for way in ("old", "new")))
    print("| part | old | new |\n|---|---|---|")
    for p in (*PARTS, "total"):
        print(f"| {p} | {median['old'][p]:.1f} | {median['new'][p]:.1f} |")
    for p in WITHIN:
        print(f"| (within the above: {p}) | {median['old'][p]:.1f} | {median['new'][p]:.1f} |")
    ratios = [o["total"] / n["total"] for o, n in zip(timed["old"], timed["new"])]
    print(f"measured old / new: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    step_parts = ("collect (no probes)", "probes", "learn")
    # each way's own seconds per training step (the same work unless the new way compacts its decoding)
    per_step = {way: sum(median[way][p] for p in step_parts) / args.steps for way in median}
    if not args.new_compact_decode:
        per_step["new"] = per_step["old"]
    per_mid = {way: median[way]["mid-run evaluations"] / mids[way] if mids[way] else 0.0 for way in mids}
    mids_projected = {way: mid_runs(e, args.project_steps) for way, e in every.items()}

    def projected(way: str) -> float:
        fixed = median[way]["total"] - sum(median[way][p] for p in step_parts) - median[way]["mid-run evaluations"]
        return fixed + args.project_steps * per_step[way] + mids_projected[way] * per_mid[way]

    start_share = median["old"]["start evaluation"] / args.cells_per_seed  # one cell per seed computes it
    project = projected("old") / (projected("new") + start_share)
    steps_text = (f"{per_step['old']:.2f} s" if per_step["new"] == per_step["old"] else
                  f"old {per_step['old']:.2f} s, new {per_step['new']:.2f} s")
    print(f"projected to {args.project_steps} steps (steps at {steps_text}; mid-run evaluations old "
          f"{mids_projected['old']} x {per_mid['old']:.1f} s, new {mids_projected['new']} x {per_mid['new']:.1f} s; "
          f"the start evaluation computed once per {args.cells_per_seed} cells): "
          f"old {projected('old'):.0f} s / new {projected('new') + start_share:.0f} s = {project:.2f}x")
    if args.new_compact_decode:
        print("results not compared: rollout.compact_decode samples other completions by design")
    else:
        print(f"identical final per-problem results, final evaluation and training metrics in every round: "
              f"{'yes' if all(identical) else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "timed": timed, "median": median,
                                               "ratios": ratios, "projected": project,
                                               "identical": identical}, indent=1))
    return 0 if all(identical) else 1


if __name__ == "__main__":
    raise SystemExit(main())
