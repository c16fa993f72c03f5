"""`cuma reproduce`: base, TTRL, Intuitor, oracle GRPO, paper-exact CuMa, its ablations and `cuma_gated`, on the
embedded tiny base with the same seeds and step budget; a Table-2-style table, one PNG and results.json.

  cuma reproduce --quick                          # 1 seed, a short budget: <= 15 min on 2 CPU cores
  cuma reproduce                                  # 3 seeds, the full budget
  cuma reproduce --methods base ttrl cuma_gated --seeds 2 --steps 60 --out runs/small
  cuma reproduce --out runs/reproduce-X           # the same directory again: finished arms are reused,
                                                  # interrupted ones resumed from their last checkpoint
                                                  # (an arm run with another budget is refused: --force)
  cuma reproduce --quick eval.n_per_level=50      # key=value overrides applied to every arm

Writes to --out (default runs/reproduce-<date>-<time>): results.json, results.md (the table), comparison.png,
run_info.json, and runs/<method>-s<seed>/ (each a normal `cuma train` run directory). Methods: base, ttrl,
intuitor, oracle, cuma, cuma_nomask, cuma_nocurriculum, cuma_nocurated, cuma_gated (default: all of them).
Every arm except cuma_nocurated trains on the balanced procedural train split (the tiny world's curated
data); cuma_nocurated trains on a MATH-skewed pool of it (few easy problems). See agents/experiments/reproduce.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from agents.experiments.reproduce import FULL_STEPS, METHOD_ORDER, QUICK_STEPS

    parser = subparsers.add_parser("reproduce", help="the paper's comparison and ablations on the tiny base",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"one seed and {QUICK_STEPS} steps per arm, evaluated at start, middle and end")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="seeds 0..N-1 (default 3; 1 with --quick)")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimizer steps per arm (default {FULL_STEPS}; {QUICK_STEPS} with --quick)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD", default=None,
                        help=f"a subset of: {' '.join(METHOD_ORDER)} (comma- or space-separated)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output directory (default runs/reproduce-<time>)")
    parser.add_argument("--force", action="store_true",
                        help="replace arm directories under --out that hold a run with a different configuration "
                             "(default: refuse, so an earlier run is never deleted by accident)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="arms trained at once, one process each (default 1: sequential; on a shared 2-core "
                             "machine more jobs only make each arm slower)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides for every arm, e.g. model.path=DIR eval.n_per_level=50")
    return parser


def run(args: argparse.Namespace) -> int:
    from agents.commands import fail
    from agents.config import ConfigError
    from agents.experiments.report import format_table
    from agents.experiments.reproduce import (
        DEFAULT_METHODS,
        METHOD_ORDER,
        DifferentRunError,
        different_runs,
        full_budget,
        method_config,
        quick_budget,
        reproduce,
    )

    items = [m for item in (args.methods or []) for m in item.split(",") if m]
    overrides = [*(m for m in items if "=" in m), *args.overrides]  # `--methods a b key=value`: an override
    methods = [m for m in items if "=" not in m] or list(DEFAULT_METHODS)
    unknown = [m for m in methods if m not in METHOD_ORDER]
    if unknown:
        return fail("reproduce", f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHOD_ORDER)}")
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if seeds < 1 or (args.steps is not None and args.steps < 1) or args.jobs < 1:
        return fail("reproduce", "--seeds, --steps and --jobs must be >= 1")
    make = quick_budget if args.quick else full_budget
    try:
        budget = make(args.steps, overrides=overrides)
        for method in methods:  # every arm's config is valid before anything trains
            config = method_config(method, 0, budget)
    except (ConfigError, ValueError) as exc:
        return fail("reproduce", exc)
    out = args.out or Path("runs") / f"reproduce-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        return fail("reproduce", f"--out {out} is a file; give a directory")
    different = different_runs(out / "runs", methods, range(seeds), budget)
    if different and not args.force:
        more = f" (and {len(different) - 1} more arm(s))" if len(different) > 1 else ""
        return fail("reproduce", f"{DifferentRunError(different[0])}{more}")
    from agents.policy import BackendUnavailable, check_vllm, resolve_device

    try:  # the device and backend every arm uses exist here
        device = resolve_device(config.model.device)
        if config.model.backend == "vllm":
            check_vllm(device)
    except (ValueError, BackendUnavailable) as exc:
        return fail("reproduce", exc)
    print(f"output directory: {out}; methods {', '.join(methods)}; seeds 0..{seeds - 1}; {budget.steps} steps "
          f"per arm", flush=True)
    started = time.perf_counter()
    results = reproduce(out, methods=methods, seeds=list(range(seeds)), budget=budget, jobs=args.jobs,
                        force=args.force, log=lambda line: print(line, flush=True))
    print()
    print(format_table(results, {"seeds": list(range(seeds)), "budget": {"steps": budget.steps,
                                                                        "eval_every": budget.eval_every},
                                 "total_wall_s": time.perf_counter() - started}))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'comparison.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.reproduce ...` (the same as `cuma reproduce ...`)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from agents.commands import run_standalone

    return run_standalone("reproduce", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
