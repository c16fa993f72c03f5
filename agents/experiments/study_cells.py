"""One cell of `cuma study`: one (world, arm, seed), trained by `cuma reproduce`'s runner, then evaluated
greedily problem by problem (the paired bootstrap needs per-problem 0/1, not only per-level means).

A cell is a directory `cells/<world>/<arm>-s<seed>/` (the base arm, which does not train: `cells/<world>/base/`):
    cell.json          what the cell is (world, arm, seed, the arm's full config, split, problems per level; an
                       arms file's arm also its whole spec, so a changed file is refused, not mixed in)
    <method>-s<seed>/  the `cuma train` run directory (`agents.experiments.reproduce.run_method`: a finished run
                       is reused, an interrupted one resumed from its last checkpoint)
    per_problem.json   the final model's greedy correctness per held-out problem, written last (atomically):
                       a cell with it is finished and skipped when the study runs again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.experiments.reproduce import Budget, method_config
from agents.experiments.study_arms import ARMS, StudyArm
from agents.experiments.worlds import TINY_FAMILY, World

RESULT_FILE = "per_problem.json"
SPEC_FILE = "cell.json"


class DifferentCellError(ValueError):
    """A cell directory holds a cell with another configuration (another budget, split, arm definition)."""

    def __init__(self, cell_dir: Path):
        super().__init__(f"{cell_dir} holds a cell with a different configuration; give another --out, or --force "
                         "to replace it")
        self.cell_dir = cell_dir


@dataclass(frozen=True)
class Cell:
    world: World
    arm: str
    seed: int                      # the base arm has one cell per world, seed 0 (greedy evaluation: no RNG)
    spec: StudyArm | None = None   # the arm, when it is not a shipped one (an arms file's): it travels to workers

    @property
    def arm_spec(self) -> StudyArm:
        if self.spec is not None:
            return self.spec
        if self.arm not in ARMS:
            raise ValueError(f"unknown arm {self.arm!r}: a cell of an arms file's arm carries its spec")
        return ARMS[self.arm]

    @property
    def label(self) -> str:
        return f"{self.world.name}/{self.arm}" + ("" if self.arm == "base" else f"-s{self.seed}")

    def directory(self, out: str | Path) -> Path:
        return Path(out) / "cells" / self.label


def cell_budget(cell: Cell, budget: Budget, model_path: str, split: str = "test") -> Budget:
    """The study budget for this cell: the world's base, the arm's overrides, then the user's (which win), and
    last the study's evaluation split, so the trainer's own held-out evaluations read that split and no other."""
    base = () if model_path == "tiny" else (f"model.path={model_path}",)
    arm = cell.arm_spec
    tuned = arm.tuned if cell.world.presets == TINY_FAMILY else ()  # chosen in the tiny design world only
    return replace(budget, overrides=(*base, *arm.overrides, *tuned, *budget.overrides, f"eval.split={split}"))


def cell_config(cell: Cell, budget: Budget, model_path: str, split: str = "test"):
    return method_config(cell.arm_spec.method, cell.seed, cell_budget(cell, budget, model_path, split),
                         family=cell.world.presets)


def cell_spec(cell: Cell, budget: Budget, model_path: str, split: str) -> dict[str, Any]:
    """What makes a cell this cell: a finished cell with another spec is not reused. An arm that is not shipped
    (an arms file's) adds its whole spec (`arm_spec`); a shipped arm's spec is the one its cells always had."""
    arm = cell.arm_spec
    config = _without_later_defaults(cell_config(cell, budget, model_path, split).to_dict())
    if not arm.trains:  # the base is evaluated only: the training budget does not change it
        config = {"model": config["model"], "eval": {k: v for k, v in config["eval"].items() if k != "every"},
                  "env": {k: config["env"][k] for k in ("id", "levels", "prompt_template")},
                  "max_new_tokens": config["rollout"]["max_new_tokens"]}
    spec = {"world": cell.world.name, "base_key": cell.world.base_key, "arm": cell.arm,
            "method": arm.method, "seed": cell.seed, "split": split, "config": config}
    if arm != ARMS.get(cell.arm):
        spec["arm_spec"] = arm.to_dict()
    return spec


# keys added after cells were run, dropped from a spec while they hold their defaults (these defaults give the
# numbers the cells had before the keys existed), so that finished cells stay finished
_LATER_DEFAULTS = {("rollout", "workers"): 1, ("rollout", "mode"): "sync", ("rollout", "max_staleness"): 1,
                   ("train", "loss"): "grpo", ("train", "clip_epsilon_high"): None,
                   ("env", "last_number_fallback"): True, ("model", "chosen_token_logprobs"): False}
_LATER_SECTIONS = {"ray": {"address": None, "num_cpus_per_worker": 1.0, "num_gpus_per_worker": 0.0,
                           "vllm_replicas": None}}


def _without_later_defaults(config: dict[str, Any]) -> dict[str, Any]:
    for (section, key), default in _LATER_DEFAULTS.items():
        if config.get(section, {}).get(key, default) == default:
            config.get(section, {}).pop(key, None)
    for section, default in _LATER_SECTIONS.items():
        if config.get(section, default) == default:
            config.pop(section, None)
    return config


def finished(cell: Cell, out: str | Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's saved result if it is finished with this spec; `DifferentCellError` if it holds another."""
    directory = cell.directory(out)
    path = directory / RESULT_FILE
    if path.is_file():
        result = json.loads(path.read_text())
        if result.get("spec") == spec:
            return result
        raise DifferentCellError(directory)
    spec_path = directory / SPEC_FILE
    if spec_path.is_file() and json.loads(spec_path.read_text()) != spec:
        raise DifferentCellError(directory)
    return None


# --- held-out problems ----------------------------------------------------------------------------
def check_split(split: str) -> None:
    """The arith source must have `split`, and it must be held out (not `train`)."""
    from agents.evaluation import bench_splits

    if split not in bench_splits("arith"):
        raise ValueError(f"evaluation split {split!r} is not a held-out split of the arith source; it has "
                         f"{', '.join(bench_splits('arith'))}")


def heldout_problems(split: str, n_per_level: int | None, levels=None):
    """({level: [Problem]}, template): the first `n_per_level` problems per level of `split`, the ones (and the
    order) `cuma eval` and the trainer's held-out evaluation (`eval.split`) use."""
    from agents.evaluation import bench_problems

    check_split(split)
    return bench_problems("arith", n_per_level, levels=levels, split=split)


# --- running a cell -------------------------------------------------------------------------------
def run_cell(cell: Cell, out: str | Path, budget: Budget, model_path: str, split: str = "test", *,
             force: bool = False) -> dict[str, Any]:
    """Train (or reuse / resume) the cell's arm and evaluate its final model per problem; return the result
    saved in per_problem.json. A finished cell with the same spec is returned as saved."""
    import shutil

    spec = cell_spec(cell, budget, model_path, split)
    directory = cell.directory(out)
    try:
        done = finished(cell, out, spec)
    except DifferentCellError:
        if not force:
            raise
        shutil.rmtree(directory)
        done = None
    if done is not None:
        return done
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / SPEC_FILE, spec)
    config = cell_config(cell, budget, model_path, split)
    run_dir, trainer_final, train_wall = None, None, 0.0
    if cell.arm_spec.trains:
        from agents.experiments.reproduce import run_method

        record = run_method(cell.arm_spec.method, cell.seed, cell_budget(cell, budget, model_path, split), directory,
                            force=force, family=cell.world.presets)
        run_dir = Path(record.run_dir)
        trainer_final, train_wall = record.per_level, record.wall_s
    model_dir = str(run_dir / "model") if run_dir is not None else model_path
    eval_started = time.perf_counter()  # train_wall covers training, across resumed sessions too
    result = _evaluate(config, model_dir, split)
    result.update(spec=spec, cell=cell.label, world=cell.world.name, arm=cell.arm, seed=cell.seed,
                  samples=count_samples(run_dir, config), train_wall_s=train_wall,
                  wall_s=round(train_wall + time.perf_counter() - eval_started, 2),
                  run_dir=None if run_dir is None else str(run_dir.relative_to(Path(out))))
    if trainer_final is not None:  # the trainer evaluated the same problems (eval.split) greedily
        result["matches_trainer_eval"] = all(abs(a - b) < 1e-9 for a, b in zip(result["per_level"], trainer_final))
    _write_json(directory / RESULT_FILE, result, indent=None)  # last: the cell is finished
    return result


def _evaluate(config, model_dir: str, split: str) -> dict[str, Any]:
    from agents.checkpoint import seed_everything
    from agents.evaluation import greedy_per_problem
    from agents.policy import build_policy

    seed_everything(config.seed)
    policy = build_policy(replace(config.model, path=model_dir), config.rollout, seed=config.seed)
    problems, template = heldout_problems(split, config.eval.n_per_level, config.env.levels)
    start = time.perf_counter()
    result = greedy_per_problem(policy, problems, config.env.prompt_template or template,
                                max_new_tokens=config.eval.max_new_tokens or config.rollout.max_new_tokens,
                                batch_size=config.eval.batch_size,
                                last_number_fallback=config.env.last_number_fallback)
    per_level = [sum(v["correct"]) / len(v["correct"]) for v in result["levels"].values()]
    result.update(per_level=per_level, mean=sum(per_level) / len(per_level),
                  eval_s=round(time.perf_counter() - start, 2))
    return result


def count_samples(run_dir: Path | None, config) -> dict[str, int]:
    """Completions generated for training: every step's groups plus every probe's (evaluation not counted)."""
    if run_dir is None:
        return {"steps": 0, "train": 0, "probe": 0, "total": 0}
    from agents.run_outputs import read_csv

    rows = read_csv(run_dir / "metrics.csv")
    group = config.rollout.group_size
    probes = max((int(float(r["probes"])) for r in rows if r.get("probes") not in (None, "")), default=0)
    probe_size = int(config.curriculum.options.get("probe_size", 8)) if config.curriculum.probe else 0
    train = len(rows) * config.rollout.prompts_per_step * group
    probe = probes * probe_size * group
    return {"steps": len(rows), "train": train, "probe": probe, "total": train + probe}


def _write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=indent) + "\n")
    os.replace(tmp, path)


def worker(cell: Cell, out: str, budget: Budget, model_path: str, split: str, force: bool) -> dict[str, Any]:
    """Entry point of a `--jobs` worker process (one thread, like the main process)."""
    import torch

    from agents.experiments.reproduce import _quiet_transformers

    torch.set_num_threads(1)
    _quiet_transformers()
    return run_cell(cell, out, budget, model_path, split, force=force)


__all__ = ["RESULT_FILE", "Cell", "DifferentCellError", "cell_budget", "cell_config", "cell_spec",
           "check_split", "count_samples", "finished", "heldout_problems", "run_cell",
           "worker"]
