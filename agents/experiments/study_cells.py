"""One cell of `cuma study`: one (world, arm, seed), trained by `cuma reproduce`'s runner, then evaluated
greedily problem by problem (the paired bootstrap needs per-problem 0/1, not only per-level means).

A cell is a directory `cells/<world>/<arm>-s<seed>/` (the base arm, which does not train: `cells/<world>/base/`):
    cell.json          what the cell is (world, arm, seed, the arm's full config, split, problems per level; an
                       arms file's arm also its whole spec, so a changed file is refused, not mixed in)
    <method>-s<seed>/  the `cuma train` run directory (`agents.experiments.reproduce.run_method`: a finished run
                       is reused, an interrupted one resumed from its last checkpoint)
    per_problem.json   the final model's greedy correctness per held-out problem (the trainer's final greedy
                       pass, from the run's eval_problems.jsonl), written last (atomically): a cell with it is
                       finished and skipped when the study runs again.
The trainer's start evaluation is the same in every trained cell of a world with the same seed: it is computed
once and reused (`<out>/start-evaluations/`, `agents.evaluation_reuse`).
Under `--budget equal_samples` a cell whose run differs from its equal-steps run (an arm that probes) lives
beside it in `cells/<world>/<arm>-s<seed>-equal_samples/`; the others are the equal-steps cells themselves.
"""

from __future__ import annotations

import functools
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
START_EVALUATIONS = "start-evaluations"  # under the study's --out: trainers' start evaluations, shared by cells


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
    last the study's evaluation split, so the trainer's own held-out evaluations read that split and no other.
    Its `kind` is equal_samples only where that budget changes the cell's run (`samples_budget`)."""
    base = () if model_path == "tiny" else (f"model.path={model_path}",)
    arm = cell.arm_spec
    tuned = arm.tuned if cell.world.presets == TINY_FAMILY else ()  # chosen in the tiny design world only
    steps = replace(budget, kind="equal_steps",
                    overrides=(*base, *arm.overrides, *tuned, *budget.overrides, f"eval.split={split}"))
    if budget.kind == "equal_samples" and arm.trains:
        return samples_budget(cell, steps, equal_samples(cell.world, budget, model_path))
    return steps


# --- equal samples ----------------------------------------------------------------------------------
SAMPLES_REFERENCE = "ttrl"  # the arm whose equal-steps spend is the equal-samples budget: it never probes, and
                            # its batch (prompts x group) is every shipped arm's


def equal_samples(world: World, budget: Budget, model_path: str) -> int:
    """The world's equal-samples budget: the completions `budget.steps` steps generate in an arm that never
    probes (`SAMPLES_REFERENCE`'s method, with the study's overrides and no arm's)."""
    return _reference_samples(world.presets, replace(budget, kind="equal_steps"), model_path)


@functools.lru_cache(maxsize=64)
def _reference_samples(presets: str, budget: Budget, model_path: str) -> int:
    base = () if model_path == "tiny" else (f"model.path={model_path}",)
    reference = method_config(ARMS[SAMPLES_REFERENCE].method, 0,
                              replace(budget, overrides=(*base, *budget.overrides)), family=presets)
    return budget.steps * generated_per_step(reference)


def generated_per_step(config) -> int:
    """The training completions one step of `config` generates (its probes aside)."""
    from agents.trainer import step_completions

    return step_completions(config)


def never_probes(config) -> bool:
    """Whether a run of `config` generates no probe groups: no probe hook, or a schedule that never asks."""
    if not config.curriculum.probe:
        return True
    from curricula import Schedule, make_schedule

    schedule = make_schedule(config.curriculum.schedule, **config.curriculum.options)
    return type(schedule).probe_request is Schedule.probe_request


def samples_budget(cell: Cell, steps: Budget, samples: int) -> Budget:
    """The cell's budget when every trained arm stops at `samples` generated completions, from its equal-steps
    budget `steps`. An arm that never probes and generates `samples` in `steps.steps` steps keeps `steps`: its
    run, spec and cell are the equal-steps ones (reused, not run again). Any other trains with
    `train.max_samples=samples` and a steps cap of what `samples` buys its batch without probes (its own
    `steps.steps` for the shipped arms, so the warm-up and cosine horizon stay the equal-steps ones)."""
    config = method_config(cell.arm_spec.method, cell.seed, steps, family=cell.world.presets)
    per_step = generated_per_step(config)
    if never_probes(config) and per_step * steps.steps == samples:
        return steps
    *rest, split = steps.overrides  # the evaluation split stays last
    return replace(steps, kind="equal_samples", steps=max(steps.steps, -(-samples // per_step)),
                   overrides=(*rest, f"train.max_samples={samples}", split))


def cell_config(cell: Cell, budget: Budget, model_path: str, split: str = "test"):
    return method_config(cell.arm_spec.method, cell.seed, cell_budget(cell, budget, model_path, split),
                         family=cell.world.presets)


def cell_spec(cell: Cell, budget: Budget, model_path: str, split: str) -> dict[str, Any]:
    """What makes a cell this cell: a finished cell with another spec is not reused. An arm that is not shipped
    (an arms file's) adds its whole spec (`arm_spec`); a shipped arm's spec is the one its cells always had."""
    arm = cell.arm_spec
    own = cell_budget(cell, budget, model_path, split)
    config = _without_later_defaults(method_config(arm.method, cell.seed, own, family=cell.world.presets).to_dict())
    if not arm.trains:  # the base is evaluated only: the training budget does not change it
        config = {"model": config["model"], "eval": {k: v for k, v in config["eval"].items() if k != "every"},
                  "env": {k: config["env"][k] for k in ("id", "levels", "prompt_template")},
                  "max_new_tokens": config["rollout"]["max_new_tokens"]}
    spec = {"world": cell.world.name, "base_key": cell.world.base_key, "arm": cell.arm,
            "method": arm.method, "seed": cell.seed, "split": split, "config": config}
    if own.kind != "equal_steps":
        spec["budget"] = own.kind  # only where the budget changes the run (`cell_directory`)
    if arm != ARMS.get(cell.arm):
        spec["arm_spec"] = arm.to_dict()
    return spec


# keys added after cells were run, dropped from a spec while they hold their defaults (these defaults give the
# numbers the cells had before the keys existed), so that finished cells stay finished
_LATER_DEFAULTS = {("rollout", "workers"): 1, ("rollout", "mode"): "sync", ("rollout", "max_staleness"): 1,
                   ("train", "loss"): "grpo", ("train", "clip_epsilon_high"): None,
                   ("env", "last_number_fallback"): True, ("model", "chosen_token_logprobs"): False,
                   ("train", "max_samples"): None, ("rollout", "vote_group_size"): None,
                   ("model", "lora_rank"): 0, ("model", "lora_alpha"): 32.0, ("model", "lora_targets"): "all-linear",
                   ("rollout", "compact_decode"): False, ("model", "shared_prompt_forward"): False}
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


def cell_directory(cell: Cell, out: str | Path, spec: dict[str, Any]) -> Path:
    """Where the cell of `spec` lives: `cell.directory(out)`, or beside it with its budget appended
    (`-equal_samples`) where its budget changed its run."""
    directory = cell.directory(out)
    return directory.with_name(f"{directory.name}-{spec['budget']}") if spec.get("budget") else directory


def finished(cell: Cell, out: str | Path, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The cell's saved result if it is finished with this spec; `DifferentCellError` if it holds another."""
    directory = cell_directory(cell, out, spec)
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
             force: bool = False, reuse: bool = True) -> dict[str, Any]:
    """Train (or reuse / resume) the cell's arm and evaluate its final model per problem; return the result
    saved in per_problem.json. A finished cell with the same spec is returned as saved.
    `reuse` (the same results, cheaper: docs/performance.md): the trainer's start evaluation is shared by the
    world's cells of the same seed (`agents.evaluation_reuse`, stored under `out/start-evaluations/`), and the
    per-problem result is the trainer's final greedy pass (its eval_problems.jsonl) rather than a second pass
    over the saved model. False evaluates as cells did before (what tests and benchmarks compare against)."""
    import contextlib
    import shutil

    spec = cell_spec(cell, budget, model_path, split)
    directory = cell_directory(cell, out, spec)
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
        from agents.evaluation_reuse import reusing_start_evaluations
        from agents.experiments.reproduce import run_method

        with reusing_start_evaluations(Path(out) / START_EVALUATIONS) if reuse else contextlib.nullcontext():
            record = run_method(cell.arm_spec.method, cell.seed, cell_budget(cell, budget, model_path, split),
                                directory, force=force, family=cell.world.presets)
        run_dir = Path(record.run_dir)
        trainer_final, train_wall = record.per_level, record.wall_s
    model_dir = str(run_dir / "model") if run_dir is not None else model_path
    eval_started = time.perf_counter()  # train_wall covers training, across resumed sessions too
    result = _from_trainer(run_dir, record.steps, config, split) if reuse and run_dir is not None else None
    if result is None:  # the base, or a run from before eval_problems.jsonl: evaluated here
        result = evaluate_model(config, model_dir, split)
    result.update(spec=spec, cell=cell.label, world=cell.world.name, arm=cell.arm, seed=cell.seed,
                  samples=count_samples(run_dir, config), train_wall_s=train_wall,
                  wall_s=round(train_wall + time.perf_counter() - eval_started, 2),
                  run_dir=None if run_dir is None else str(run_dir.relative_to(Path(out))))
    if trainer_final is not None:  # the trainer evaluated the same problems (eval.split) greedily
        result["matches_trainer_eval"] = all(abs(a - b) < 1e-9 for a, b in zip(result["per_level"], trainer_final))
    _write_json(directory / RESULT_FILE, result, indent=None)  # last: the cell is finished
    return result


def _from_trainer(run_dir: Path, final_step: int, config, split: str) -> dict[str, Any] | None:
    """`_evaluate`'s result read from the trainer's final evaluation (its greedy pass over the same problems in
    the same batches, on the weights it then saved): None when the run logged no per-problem results at its
    final step (a run from before eval_problems.jsonl) or they are not the problems `_evaluate` would read."""
    from agents.run_outputs import read_eval_problems

    start = time.perf_counter()
    final = [e for e in read_eval_problems(run_dir) if e["step"] == final_step]
    if not final:
        return None
    problems, _ = heldout_problems(split, config.eval.n_per_level, config.env.levels)
    levels = {lv: {k: v[k] for k in ("ids", "correct", "answered")} for lv, v in final[-1]["levels"].items()}
    if [(lv, v["ids"]) for lv, v in levels.items()] != [(str(lv), [p.id for p in ps]) for lv, ps in problems.items()]:
        return None
    per_level = [sum(v["correct"]) / len(v["correct"]) for v in levels.values()]
    return {"levels": levels, "collapse": final[-1]["collapse"], "per_level": per_level,
            "mean": sum(per_level) / len(per_level), "eval_s": round(time.perf_counter() - start, 2),
            "from_trainer_eval": True}


def evaluate_model(config, model_dir: str, split: str) -> dict[str, Any]:
    """A model's greedy correctness per held-out problem of `split`, under a cell's config (a cell's result)."""
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
    summary = run_dir / "summary.json"
    counted = json.loads(summary.read_text()).get("samples") if summary.is_file() else None
    if counted:  # the trainer's own count (agents.sample_count): what was generated
        return {"steps": len(rows), **{k: int(counted[k]) for k in ("train", "probe", "total")}}
    group = config.rollout.vote_group_size or config.rollout.group_size  # what was generated per prompt
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
    from agents.experiments.reproduce import start_worker

    start_worker()
    return run_cell(cell, out, budget, model_path, split, force=force)


__all__ = ["RESULT_FILE", "SAMPLES_REFERENCE", "START_EVALUATIONS", "Cell", "DifferentCellError", "cell_budget",
           "cell_config", "cell_directory", "cell_spec", "check_split", "count_samples", "equal_samples",
           "evaluate_model", "finished",
           "generated_per_step", "heldout_problems", "never_probes", "run_cell", "samples_budget", "worker"]
