"""`cuma study`: the pre-registered test of the label-free claim (docs/study-protocol.md) over a family of
tiny worlds, with paired bootstrap intervals.

    from agents.experiments.study import StudyPlan, run_study, study_budget
    from agents.experiments.study_arms import STUDY1_ARMS
    from agents.experiments.worlds import load_worlds
    plan = StudyPlan(worlds=tuple(load_worlds()), arms=STUDY1_ARMS, budget=study_budget())
    study = run_study("runs/study", plan, jobs=2)   # study.json, study.md, forest.png, cells/<world>/<arm>-s<seed>/

The grid is worlds x arms x seeds (the decomposition arms in the design world only; the base arm once per
world: greedy evaluation does not depend on a seed). Each cell trains with `cuma reproduce`'s runner and
presets (`agents.experiments.study_cells`), is skipped when finished and resumed when interrupted, so a
killed study continues with the same command. Every world's base is built (or installed) before any cell.
Arms are compared at equal steps (`Budget.kind` equal_steps), or at equal samples (equal_samples: every trained
cell stops at the completions, probes included, that the steps buy an arm that never probes; study.json's plan
gives that number per world, `max_samples`, and each cell its `samples`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.experiments.bootstrap import B_DEFAULT, RNG_SEED
from agents.experiments.reproduce import EVAL_N_PER_LEVEL, FULL_STEPS, Budget
from agents.experiments.study_arms import QUICK_ARMS, SHIPPED_TABLE, ArmTable
from agents.experiments.study_cells import (
    Cell,
    DifferentCellError,
    cell_spec,
    check_split,
    equal_samples,
    finished,
    run_cell,
    worker,
)
from agents.experiments.worlds import World, base_info, model_path

QUICK_STEPS = 4
QUICK_N_PER_LEVEL = 10


def study_budget(steps: int | None = None, n_per_level: int | None = None, overrides: Sequence[str] = ()) -> Budget:
    """The protocol's budget: `cuma reproduce`'s full step count, the trainer evaluating only at the start and
    the end (the study's metric is the per-problem evaluation after training)."""
    return Budget(steps=steps or FULL_STEPS, eval_every=0, eval_n_per_level=n_per_level or EVAL_N_PER_LEVEL,
                  overrides=tuple(overrides))


def quick_budget(steps: int | None = None, n_per_level: int | None = None, overrides: Sequence[str] = ()) -> Budget:
    """`--quick`: a few steps and a few problems per level; the plumbing, not a result."""
    steps = steps or QUICK_STEPS
    return Budget(steps=steps, eval_every=0, checkpoint_every=max(1, steps // 2),
                  eval_n_per_level=n_per_level or QUICK_N_PER_LEVEL, overrides=tuple(overrides))


@dataclass(frozen=True)
class StudyPlan:
    worlds: tuple[World, ...]
    arms: tuple[str, ...]
    budget: Budget
    split: str = "test"            # the evaluation split: validation while tuning, test for the final runs
    seeds: int | None = None       # RL seeds per (world, arm); None: each world's own `seeds`
    n_boot: int = B_DEFAULT
    table: ArmTable = SHIPPED_TABLE  # the arms it may run: the shipped ones, plus an arms file's
    protocol: str = "docs/study-protocol.md"  # the pre-registration it runs under (its last commit is recorded)
    sampled: Any = None            # `world_sampler.Sampled`: drawn worlds, checked by its rule as their bases build
    drawn: dict[str, Any] | None = None  # how the worlds were drawn: distribution, rule, replaced draws

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.table.check(self.arms)))
        if not self.worlds:
            raise ValueError("a study needs at least one world")
        if self.seeds is not None and self.seeds < 1 or self.n_boot < 100:
            raise ValueError(f"seeds must be >= 1 and n_boot >= 100, got {self.seeds} and {self.n_boot}")
        check_split(self.split)

    def seeds_of(self, world: World) -> list[int]:
        return list(range(self.seeds or world.seeds))

    def cells(self) -> list[Cell]:
        """The grid, world by world; the decomposition arms only in the design world."""
        cells = []
        for world in self.worlds:
            for arm in self.arms:
                spec = self.table.arm(arm)
                if spec.design_only and world.role != "design":
                    continue
                added = spec if self.table.is_added(arm) else None
                cells += [Cell(world, arm, 0)] if arm == "base" else \
                    [Cell(world, arm, s, added) for s in self.seeds_of(world)]
        return cells

    def to_dict(self) -> dict[str, Any]:
        plan = {"worlds": [w.to_dict() for w in self.worlds], "arms": list(self.arms), "budget": asdict(self.budget),
                "split": self.split, "seeds": {w.name: self.seeds_of(w) for w in self.worlds},
                "n_boot": self.n_boot, "bootstrap_rng_seed": RNG_SEED}
        if self.table != SHIPPED_TABLE:
            plan["arms_file"] = self.table.to_dict()
        if self.protocol != StudyPlan.protocol:
            plan["protocol"] = self.protocol
        if self.budget.kind == "equal_samples":  # the generated completions every trained cell stops at
            plan["max_samples"] = {w.name: equal_samples(w, self.budget, "tiny") for w in self.worlds}
        if self.drawn is not None:
            plan["drawn"] = self.drawn
        return plan


def quick_plan(worlds: Sequence[World], overrides: Sequence[str] = (), steps: int | None = None,
               n_per_level: int | None = None, table: ArmTable = SHIPPED_TABLE) -> StudyPlan:
    """One world (the design world, else the first), base and cuma_gated (and an arms file's arms), one seed, a
    few steps."""
    world = next((w for w in worlds if w.role == "design"), worlds[0])
    arms = (*QUICK_ARMS, *(a.name for a in table.added))
    return StudyPlan(worlds=(world,), arms=arms, budget=quick_budget(steps, n_per_level, overrides), seeds=1,
                     table=table)


def different_cells(out: str | Path, plan: StudyPlan, paths: dict[str, str]) -> list[Path]:
    """The cell directories under `out` that hold a cell with another configuration."""
    found = []
    for cell in plan.cells():
        try:
            finished(cell, out, cell_spec(cell, plan.budget, paths[cell.world.name], plan.split))
        except DifferentCellError as exc:
            found.append(exc.cell_dir)
    return found


def build_bases(plan: StudyPlan, log: Callable[[str], None] = print) -> dict[str, str]:
    """`model.path` per world, building (or installing) every world's base first: parallel cells would
    otherwise wait on its lock, and a base trains for minutes."""
    from agents.tiny.cache import base_path, is_built

    paths = {}
    for world in plan.worlds:
        if world.model:
            log(f"world {world.name}: the model {world.model} (installed once if it is packaged) ...")
        elif not world.is_default_base and not is_built(base_path(world.base_config())):
            log(f"building the base of world {world.name} (a tiny-base training run: minutes) ...")
        paths[world.name] = model_path(world, build=True, progress=True)
    return paths


class CellProcessKilled(RuntimeError):
    """A cell's process ended without a Python error (a signal: most often the kernel's OOM killer)."""

    def __init__(self, finished: int, total: int):
        super().__init__(
            f"a cell's process was killed (no Python error: most often the kernel's OOM killer); the {finished} of "
            f"{total} cells that finished in this run are kept. Run the same command again: finished cells are "
            "skipped and the others go on from their last checkpoint. Fewer --jobs, or train.micro_batch=N for a "
            "model world (the loss in parts of N rows; a deviation to declare), lowers the memory cells need at once")


def run_study(out: str | Path, plan: StudyPlan, *, jobs: int = 1, force: bool = False, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every cell not finished yet (`jobs` processes), then write study.json, study.md and forest.png.
    A cell directory with another configuration is a `DifferentCellError` before anything trains, unless
    `force` replaces it."""
    from tqdm.auto import tqdm

    from agents.experiments.reproduce import _quiet_transformers
    from agents.experiments.study_analysis import analyse
    from agents.experiments.study_report import protocol_commit, write_outputs

    out = Path(out)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _quiet_transformers()
    started = time.perf_counter()
    if plan.sampled is not None:  # drawn worlds: each base built and checked, the rule's rejects replaced
        from agents.experiments.world_sampler import resolve_plan

        plan = resolve_plan(plan, log, progress, jobs=jobs)
    paths = build_bases(plan, log)
    different = different_cells(out, plan, paths)
    if different and not force:
        raise DifferentCellError(different[0])
    cells = plan.cells()
    args = [(c, str(out), plan.budget, paths[c.world.name], plan.split, force) for c in cells]
    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(cells), desc="study cells", unit="cell", disable=not progress)
    write = tqdm.write if progress else log

    def done(result: dict[str, Any]) -> None:
        results.append(result)
        bar.update(1)
        write(f"{result['cell']}: mean greedy {result['mean']:.3f}, {result['samples']['total']} samples, "
              f"{result['wall_s']:.0f} s")

    try:
        if jobs <= 1:
            for a in args:
                bar.set_postfix_str(a[0].label)
                done(run_cell(*a[:5], force=a[5]))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed
            from concurrent.futures.process import BrokenProcessPool

            try:
                with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                    for future in as_completed([pool.submit(worker, *a) for a in args]):
                        done(future.result())
            except BrokenProcessPool:
                raise CellProcessKilled(len(results), len(cells)) from None
    finally:
        bar.close()
    order = {c.label: i for i, c in enumerate(cells)}
    results.sort(key=lambda r: order[r["cell"]])
    study = {"protocol": protocol_commit(path=plan.protocol), "plan": plan.to_dict(), "jobs": jobs,
             "bases": {w.name: base_info(w) for w in plan.worlds},
             "total_wall_s": round(time.perf_counter() - started, 1),
             "cells": [{k: r[k] for k in ("cell", "world", "arm", "seed", "per_level", "mean", "collapse", "samples",
                                          "wall_s", "run_dir")} for r in results],
             "analysis": analyse(plan.worlds, results, n_boot=plan.n_boot, table=plan.table)}
    write_outputs(out, study)
    return study


__all__ = ["QUICK_N_PER_LEVEL", "QUICK_STEPS", "StudyPlan", "build_bases", "different_cells", "quick_budget",
           "quick_plan", "run_study", "study_budget"]
