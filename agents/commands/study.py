"""`cuma study`: the pre-registered test of the label-free claim over a family of tiny worlds, with 95% paired
bootstrap intervals per world and pooled over the held-out worlds (docs/study-protocol.md).

  cuma study --quick                         # the plumbing: design world, base and cuma_gated, 1 seed, 4 steps
  cuma study --out runs/study                # the protocol's grid (hours); the same --out again resumes:
                                             # finished cells are skipped, an interrupted one resumed
  cuma study --worlds my-worlds.yaml --arms base ttrl cuma_gated --seeds 3 --jobs 2
  cuma study --arms-file my-arms.yaml --arms base cuma_gated mine   # arms of your own (docs/extending.md)
  cuma study --dry-run                       # the grid, the bases to train and the samples, nothing run
  cuma study --worlds sampled:12 --write-worlds w.yaml   # 12 held-out worlds drawn (docs/worlds.md), to review
  cuma study --out runs/study --export DIR   # finished cells only (results, no run directories), to carry over
  cuma study --out runs/study --merge DIR    # take in another machine's or session's cells, then run the rest
  cuma study --out runs/study --compare DIR  # a re-run elsewhere: identical per-problem results? (exit 1 if not)

A world is a tiny-base configuration (name, role: design | held_out, TinyBaseConfig fields); the shipped file
is agents/experiments/study_worlds/default.yaml. An arms file adds arms (a `cuma reproduce` method plus
overrides, as the shipped ones) and contrasts: agents/experiments/study_arms_file.py. Writes to --out
(default runs/study-<date>-<time>): study.json, study.md, forest.png and cells/<world>/<arm>-s<seed>/ (cell.json,
per_problem.json and a `cuma train` run directory). See agents/experiments/study.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from agents.experiments.study import QUICK_STEPS
    from agents.experiments.study_arms import ARM_ORDER

    parser = subparsers.add_parser("study", help="the label-free claim over several tiny worlds, with intervals",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", metavar="FILE|sampled:N[:FILE]",
                        help="a YAML or JSON world file (default: agents/experiments/study_worlds/default.yaml), or "
                             "sampled:N: N held-out worlds drawn from the distribution "
                             "agents/experiments/study_worlds/distribution.yaml (sampled:N:FILE: from another one), a "
                             "base its rule rejects replaced by the next draw (docs/worlds.md)")
    parser.add_argument("--write-worlds", type=Path, metavar="FILE",
                        help="with --worlds sampled:N: build and check the drawn worlds' bases, write them (and the "
                             "replaced draws) as a world file to review and commit, and exit; with --dry-run, write "
                             "the draws unchecked, building nothing")
    parser.add_argument("--quick", action="store_true",
                        help=f"one world (the design one), arms base and cuma_gated, one seed, {QUICK_STEPS} steps")
    parser.add_argument("--arms", nargs="+", metavar="ARM", default=None,
                        help=f"a subset of: {' '.join(ARM_ORDER)} and the --arms-file arms (comma- or "
                             "space-separated; default all)")
    parser.add_argument("--arms-file", type=Path, metavar="FILE",
                        help="a YAML or JSON file of arms of your own (name, method, overrides, votes, description) "
                             "and contrasts; they join the shipped arms")
    parser.add_argument("--protocol", default="docs/study-protocol.md", metavar="FILE",
                        help="the pre-registration the study runs under, a path in this repository (default "
                             "docs/study-protocol.md; docs/smollm2-protocol.md for the smollm2 world): study.json "
                             "and study.md record its last commit and whether it changed since")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="RL seeds 0..N-1 per (world, arm) (default: each world's `seeds`, 5 design / 3 held-out)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per trained cell (default 120)")
    parser.add_argument("--budget", choices=("equal_steps", "equal_samples"), default="equal_steps",
                        help="compare arms at equal optimizer steps (default), or at equal samples: every trained "
                             "cell stops at the completions (probes included) the steps buy an arm without probes; "
                             "only the probing arms' cells run again (beside the others, *-equal_samples)")
    parser.add_argument("--n-per-level", type=int, default=None, metavar="N",
                        help="held-out problems per level (default 400; 10 with --quick)")
    parser.add_argument("--split", default="test",
                        help="the evaluation split: validation while tuning (test is then never read), test (default)")
    parser.add_argument("--bootstrap", type=int, default=None, metavar="B", help="bootstrap replicates (default 2000)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output directory (default runs/study-<time>)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells (and drawn worlds' bases) run at once, one process each (default 1)")
    parser.add_argument("--force", action="store_true",
                        help="replace cell directories under --out that hold another configuration (default: refuse)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="DIR", default=[],
                        help="first take in the finished cells of these study directories (or --export copies): "
                             "one study run on several machines or sessions")
    parser.add_argument("--export", type=Path, metavar="DIR",
                        help="copy the finished cells of --out (results only, no run directories) to DIR and exit")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="compare the finished cells of --out with DIR's, problem by problem, and exit "
                             "(exit 1 if any differs): a re-run of a study on another machine")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the cells")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides for every trained cell, e.g. rollout.prompts_per_step=8")
    return parser


def make_plan(args: argparse.Namespace):
    """The `StudyPlan` of the arguments; `ValueError` (or `ConfigError`) naming what to fix."""
    from agents.config import ConfigError
    from agents.experiments.bootstrap import B_DEFAULT
    from agents.experiments.study import StudyPlan, quick_plan, study_budget
    from agents.experiments.study_arms import SHIPPED_TABLE
    from agents.experiments.study_arms_file import load_arms_file
    from agents.experiments.study_cells import Cell, cell_config
    from agents.experiments.world_sampler import study_worlds

    items = [a for item in (args.arms or []) for a in item.split(",") if a]
    overrides = [*(a for a in items if "=" in a), *args.overrides]
    arms = [a for a in items if "=" not in a]
    for name in ("seeds", "steps", "n_per_level", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    worlds, sampled, drawn = study_worlds(args.worlds, quick=args.quick)  # a file, or sampled:N drawn
    table = load_arms_file(args.arms_file) if args.arms_file is not None else SHIPPED_TABLE
    n_boot = args.bootstrap or B_DEFAULT
    if args.quick:
        plan = quick_plan(worlds, overrides, args.steps, args.n_per_level, table)
        plan = StudyPlan(plan.worlds, tuple(arms) or plan.arms, plan.budget, args.split, args.seeds or 1, n_boot,
                         table)
    else:
        plan = StudyPlan(tuple(worlds), tuple(arms) or table.default_order,
                         study_budget(args.steps, args.n_per_level, overrides), args.split, args.seeds, n_boot, table)
    plan = replace(plan, protocol=args.protocol, budget=replace(plan.budget, kind=args.budget))
    plan = replace(plan, sampled=sampled, drawn=drawn)
    for arm in plan.arms:  # every arm's config is valid before any base trains (on the default base's path)
        try:
            config = cell_config(Cell(plan.worlds[0], arm, 0, plan.table.arm(arm)), plan.budget, "tiny", plan.split)
        except ConfigError as exc:
            if not plan.table.is_added(arm):
                raise
            raise ConfigError(f"arm {arm!r} of {args.arms_file}: {exc}") from None
    from agents.policy import check_vllm, resolve_device

    device = resolve_device(config.model.device)  # the device and backend every cell uses exist here
    if config.model.backend == "vllm":
        check_vllm(device)
    return plan


def describe(plan) -> str:
    from agents.experiments.study_cells import cell_config
    from agents.tiny.cache import base_path, is_built

    cells = plan.cells()
    trained = [c for c in cells if c.arm_spec.trains]
    steps = plan.budget.steps
    rollout = cell_config(trained[0], plan.budget, "tiny").rollout if trained else None
    samples = f", {steps * rollout.prompts_per_step * rollout.group_size} training completions" if rollout else ""
    probes = "probes extra" if plan.budget.kind == "equal_steps" else \
        "equal samples: probes included, a probing arm stops when its steps and probes reach that many"
    lines = [(f"{len(cells)} cells ({len(trained)} trained: {steps} steps each{samples}, {probes}; evaluation on "
              f"the {plan.split} split, {plan.budget.eval_n_per_level} problems per level)")]
    for world in plan.worlds:
        mine = [c for c in cells if c.world.name == world.name]
        state = ("(published)" if world.is_default_base else f"(presets {world.presets}-*)" if world.model
                 else "" if is_built(base_path(world.base_config())) else "(to train)")
        lines.append(f"  {world.name} ({world.role}): {len(mine)} cells, seeds {plan.seeds_of(world)}, base "
                     f"{world.base_key} {state}; {world.description}")
    lines.append(f"  arms: {', '.join(plan.arms)}")
    if plan.drawn is not None:
        from agents.experiments.world_sampler import describe_record

        lines.append(describe_record(plan.drawn, pending=plan.sampled is not None))
    return "\n".join(lines)


def write_worlds(args: argparse.Namespace, plan) -> int:
    """`--write-worlds FILE`: the drawn worlds as a world file, each base built and checked (unchecked with
    --dry-run), the replaced draws listed; nothing else runs."""
    from agents.commands import check_out_file, fail
    from agents.experiments.world_sampler import resolve_plan, write_world_file
    from agents.experiments.worlds import WorldError

    if plan.sampled is None:
        return fail("study", "--write-worlds writes the worlds drawn by --worlds sampled:N[:FILE]; give that")
    try:
        check_out_file(args.write_worlds)
        if not args.dry_run:
            plan = resolve_plan(plan, lambda line: print(line, flush=True), progress=not args.no_progress,
                                jobs=args.jobs)
    except (OSError, WorldError) as exc:
        return fail("study", exc)
    write_world_file(args.write_worlds, plan.worlds, plan.drawn)
    replaced = plan.drawn["replaced"]
    print(f"wrote {args.write_worlds}: {len(plan.worlds)} drawn worlds"
          + (f", {len(replaced)} draws replaced ({', '.join(r['name'] for r in replaced)})" if replaced else "")
          + ("" if plan.drawn["checked"] else f"; not checked yet: {', '.join(plan.drawn['unchecked'])}"))
    return 0


def run(args: argparse.Namespace) -> int:
    from agents.commands import fail
    from agents.config import ConfigError
    from agents.experiments.study_cells import DifferentCellError
    from agents.experiments.study_transfer import compare_cells, copy_finished_cells
    from agents.experiments.worlds import WorldError
    from agents.policy import BackendUnavailable

    if args.compare is not None:
        if args.out is None:
            return fail("study", "--compare reads the finished cells of --out: give --out DIR")
        found = compare_cells(args.out, args.compare)
        if not found["same"] and not found["different"]:
            return fail("study", f"{args.out} and {args.compare} have no finished cell in common: nothing to compare")
        for cell in found["different"]:
            print(f"differs: {cell}")
        print(f"{len(found['same'])} cells identical problem by problem, {len(found['different'])} differ "
              f"(cells finished in both {args.out} and {args.compare})")
        if found["only_mine"] or found["only_theirs"]:
            print(f"not compared: {len(found['only_mine'])} cells finished only in {args.out}, "
                  f"{len(found['only_theirs'])} only in {args.compare}")
        return 1 if found["different"] else 0
    if args.export is not None:
        if args.out is None:
            return fail("study", "--export copies the finished cells of --out: give --out DIR")
        try:
            copied, present = copy_finished_cells(args.out, args.export)
        except (OSError, ValueError) as exc:
            return fail("study", exc)
        print(f"exported {copied} finished cells of {args.out} to {args.export} ({present} already there)")
        return 0
    try:
        plan = make_plan(args)
    except (ConfigError, WorldError, ValueError, BackendUnavailable) as exc:
        return fail("study", exc)
    out = args.out or Path("runs") / f"study-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        return fail("study", f"--out {out} is a file; give a directory")
    print(describe(plan), flush=True)
    if args.write_worlds is not None:
        return write_worlds(args, plan)
    if args.dry_run:
        return 0
    for source in args.merge:
        try:
            copied, present = copy_finished_cells(source, out)
        except (OSError, ValueError) as exc:
            return fail("study", exc)
        print(f"merged {copied} finished cells from {source} ({present} already finished here)", flush=True)
    from agents.experiments.study import CellProcessKilled, run_study
    from agents.experiments.study_report import format_markdown

    print(f"output directory: {out}", flush=True)
    try:
        study = run_study(out, plan, jobs=args.jobs, force=args.force, progress=not args.no_progress,
                          log=lambda line: print(line, flush=True))
    except (DifferentCellError, WorldError, CellProcessKilled) as exc:  # WorldError: drawn worlds the rule
        return fail("study", exc)                                        # replaced too often
    print()
    print(format_markdown(study))
    print(f"wrote {out / 'study.json'}, {out / 'study.md'}, {out / 'forest.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.study ...` (the same as `cuma study ...`)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from agents.commands import run_standalone

    return run_standalone("study", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
