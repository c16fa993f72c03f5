"""`cuma reproduce`: the paper's comparison (Table 2 and the ablations) in miniature, on the embedded tiny base.

    from agents.experiments.reproduce import Budget, reproduce
    results = reproduce(out_dir, methods=["base", "ttrl", "cuma_gated"], seeds=[0], budget=Budget(steps=60))
    # out_dir/results.json, results.md (the table), comparison.png, run_info.json, runs/<method>-s<seed>/

Every trained arm starts from the same base (`model.path`, default the embedded tiny base), with the same
seeds, the same step budget (`train.steps`), the same batch (prompts x group size) and the same held-out
evaluation (the arith test split: `eval.n_per_level` problems per level, greedy and `eval.samples` samples at
`eval.temperature`), so only the method differs. Each arm is its shipped preset (`agents/presets`) plus the
budget; `base` is the held-out evaluation of the start model, no training.

Which data each arm trains on (the tiny-scale stand-in for the paper's curated data of known difficulty):
- every arm except `cuma_nocurated` draws from the procedural train split (`CuMa-Arith-v0`, split `train`):
  problems of *known* difficulty in five balanced bins. This is the curated data of the tiny world: the
  paper generated easy problems because MATH has few; here every bin is full.
- `cuma_nocurated` is paper-exact CuMa on a MATH-like natural pool: `skewed_pool` of the same train split
  with MATH's level proportions (958/2152/2618/2776/3494 of 12k), `NOCURATED_POOL_SIZE` problems
  (60/134/164/174/218 at 750): few easy problems.
- The sequential (paper) curriculum trains one stage per bin, each as long as its share of the pool, scaled
  to the step budget (the paper trains one epoch over bins of unequal size): equal stages on the balanced
  split (`cuma`, `cuma_nomask`), MATH-proportioned stages (8% of the steps on level 1, 29% on level 5) on
  the skewed pool (`cuma_nocurated`). So `cuma` vs `cuma_nocurated` differ only in the data.

`cuma_nocurated`'s pool is config, like everything else about an arm: `env.pool.kind=skewed`,
`env.pool.size=NOCURATED_POOL_SIZE` (`agents.train_pool` builds it; the held-out split is untouched). So its
run directory continues with plain `cuma train --resume` as well as with `cuma reproduce --out SAME_DIR`
(finished runs are reused, interrupted ones resumed from their last checkpoint); `pool.txt` in a run
directory with a non-default pool shows the pool's level counts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.experiments.arms import DEFAULT_METHODS, METHOD_ORDER, METHODS, NOCURATED_POOL_SIZE
from cuma_env.problems import LEVELS
from curricula.mixing import MATH_LEVEL_COUNTS

# Held-out problems per level: the whole L1 (26) and L2 (187) test splits and 400 of L3-L5 (validation: all of
# its 11 and 80, then 400). With the preset's 100 a level's greedy accuracy has a standard error of ~0.05 and the
# 5-level mean ~0.02, the size of the effects being compared; at 400 they are ~0.025 and ~0.012 (L1 stays
# coarse: 26 test problems, one is 0.038).
EVAL_N_PER_LEVEL = 400
# How trained arms are made comparable: equal optimizer steps (every arm `steps`), or equal samples (every arm
# stops at the generated completions, probes included, that `steps` buy an arm that never probes:
# `cuma study --budget equal_samples`, agents.experiments.study_cells.samples_budget)
BUDGET_KINDS = ("equal_steps", "equal_samples")


@dataclass(frozen=True)
class Budget:
    """What every trained arm gets: optimizer steps, evaluation points, checkpoints."""

    steps: int = 120
    eval_every: int = 30              # 0: evaluate only at the start and the end
    checkpoint_every: int | None = None  # None: the preset's
    eval_n_per_level: int | None = EVAL_N_PER_LEVEL  # held-out problems per level (None: the preset's)
    overrides: tuple[str, ...] = ()   # extra `key=value` for every arm (e.g. model.path=..., eval.n_per_level=8)
    kind: str = "equal_steps"         # one of BUDGET_KINDS

    def __post_init__(self) -> None:
        if self.steps < 1 or self.eval_every < 0:
            raise ValueError(f"steps must be >= 1 and eval_every >= 0, got {self.steps}, {self.eval_every}")
        if self.kind not in BUDGET_KINDS:
            raise ValueError(f"budget must be one of {', '.join(BUDGET_KINDS)}, got {self.kind!r}")


QUICK_STEPS = 80
FULL_STEPS = 120


def quick_budget(steps: int | None = None, overrides: Sequence[str] = ()) -> Budget:
    """`--quick`: one seed, a short budget, evaluation at the start, the middle and the end."""
    steps = steps or QUICK_STEPS
    return Budget(steps=steps, eval_every=max(1, steps // 2), checkpoint_every=steps, overrides=tuple(overrides))


def full_budget(steps: int | None = None, overrides: Sequence[str] = ()) -> Budget:
    steps = steps or FULL_STEPS
    return Budget(steps=steps, eval_every=max(1, steps // 4), overrides=tuple(overrides))


# --- configs --------------------------------------------------------------------------------------
def _split_evenly(total: int, weights: Sequence[float]) -> list[int]:
    """`total` as positive integers proportional to `weights` (largest remainder; each >= 1)."""
    whole = float(sum(weights))
    exact = [total * w / whole for w in weights]
    counts = [max(1, int(e)) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: -(exact[i] - int(exact[i])))
    i = 0
    while sum(counts) < total:
        counts[order[i % len(order)]] += 1
        i += 1
    while sum(counts) > total and max(counts) > 1:  # every stage keeps >= 1 (tiny budgets overshoot)
        j = max(range(len(counts)), key=lambda k: counts[k])
        counts[j] -= 1
    return counts


def method_config(method: str, seed: int, budget: Budget, family: str = "tiny"):
    """The `agents.config.Config` of one arm: its preset, the budget, the seed, sequential stages scaled.
    `family`: the presets the arm trains from (`tiny-ttrl`, or `smollm2-ttrl` for the family `smollm2`)."""
    from agents.config import load_config

    spec = METHODS[method]
    preset = spec.preset or "tiny-cuma-gated"  # base: any tiny preset (only model and eval keys are used)
    if family != "tiny":
        preset = f"{family}-{preset.removeprefix('tiny-')}"
    overrides = [f"seed={seed}", f"train.steps={budget.steps}", f"eval.every={budget.eval_every}",
                 "output.progress=false", "output.tensorboard=false", *spec.overrides, *budget.overrides]
    if budget.eval_n_per_level:
        overrides.insert(3, f"eval.n_per_level={budget.eval_n_per_level}")  # before the user's, which win
    if budget.checkpoint_every:
        overrides.append(f"output.checkpoint_every={budget.checkpoint_every}")
    config = load_config(preset=preset, overrides=overrides)
    if config.curriculum.schedule == "sequential":
        groups = budget.steps * config.rollout.prompts_per_step
        levels = config.env.levels or list(LEVELS)
        skewed = config.env.pool.kind == "skewed"
        weights = [MATH_LEVEL_COUNTS[lv] for lv in levels] if skewed else [1.0] * len(levels)
        stages = _split_evenly(groups, weights)
        config = config.replace({"curriculum.options.steps_per_level": stages})
    return config.replace({"name": method})


# --- one arm --------------------------------------------------------------------------------------
@dataclass
class RunRecord:
    method: str
    seed: int
    mean_acc: float                 # final greedy pass@1, mean over levels
    per_level: list[float]          # final greedy pass@1 per level
    pass1_t06: float                # final sampled pass@1 (eval.temperature, eval.samples), mean over levels
    collapse: float                 # final share of the most common greedy answer across held-out prompts
    wall_s: float
    peak_mean_acc: float            # best mean greedy over the evaluations (step 0 included)
    peak_per_level: list[float]     # best greedy per level over the evaluations
    maj: float = 0.0                # final maj@k, mean over levels
    steps: int = 0
    curve: list[list[float]] = field(default_factory=list)  # [step, mean greedy] per evaluation
    run_dir: str | None = None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _measured(value: Any) -> float:
    """A number from an evaluation or eval.csv; NaN for what a greedy-only evaluation (`eval.samples: 0`) left
    empty (None, or "" in the CSV), so means over it say "not measured" rather than 0."""
    return math.nan if value is None or value == "" else float(value)


def record_from_eval(method: str, seed: int, evals: Sequence[tuple[int, dict[str, Any]]], wall_s: float,
                     run_dir: str | None = None) -> RunRecord:
    """A record from a run's held-out evaluations [(step, evaluate() result)], the last being the final."""
    step, last = evals[-1]
    levels = list(last["levels"])
    final = [float(last["levels"][lv]["greedy"]) for lv in levels]
    curve = [[float(s), _mean([float(r["levels"][lv]["greedy"]) for lv in levels])] for s, r in evals]
    peak_levels = [max(float(r["levels"][lv]["greedy"]) for _, r in evals if lv in r["levels"]) for lv in levels]
    return RunRecord(
        method=method, seed=seed, mean_acc=_mean(final), per_level=final,
        pass1_t06=_mean([_measured(last["levels"][lv]["pass1"]) for lv in levels]),
        collapse=float(last["collapse"]), wall_s=round(float(wall_s), 2),
        peak_mean_acc=max(c[1] for c in curve), peak_per_level=peak_levels,
        maj=_mean([_measured(last["levels"][lv]["maj"]) for lv in levels]), steps=int(step), curve=curve,
        run_dir=run_dir)


def evals_from_run_dir(run_dir: Path) -> list[tuple[int, dict[str, Any]]]:
    """[(step, {"levels": {level: stats}, "collapse": c})] from a finished run's eval.csv."""
    from agents.run_outputs import read_csv

    by_step: dict[int, dict[str, Any]] = {}
    for row in read_csv(run_dir / "eval.csv"):
        entry = by_step.setdefault(int(float(row["step"])), {"levels": {}, "collapse": float(row["collapse"])})
        level = int(row["level"]) if row["level"].isdigit() else row["level"]
        entry["levels"][level] = {k: _measured(row[k]) for k in ("n", "greedy", "pass1", "maj")}
    return sorted(by_step.items())


def evaluate_base(seed: int, budget: Budget) -> RunRecord:
    """The `base` arm: the start model on the held-out evaluation every trained arm uses."""
    from agents.checkpoint import seed_everything
    from agents.evaluation import evaluate_heldout
    from agents.policy import build_policy

    c = method_config("base", seed, budget)
    start = time.perf_counter()
    seed_everything(c.seed)
    policy = build_policy(c.model, c.rollout, seed=c.seed)
    result = evaluate_heldout(policy, c)
    return record_from_eval("base", seed, [(0, result)], time.perf_counter() - start)


class DifferentRunError(ValueError):
    """An arm's run directory holds a run with another configuration (another budget, `--quick`, overrides)."""

    def __init__(self, run_dir: Path):
        super().__init__(f"{run_dir} holds a run with a different configuration; give another --out, or --force "
                         "to replace it")
        self.run_dir = run_dir


def different_runs(runs_dir: str | Path, methods: Sequence[str], seeds: Sequence[int], budget: Budget) -> list[Path]:
    """The arms' run directories under `runs_dir` that hold a run with another configuration (what `run_method`
    would refuse to replace without `force`)."""
    found = []
    for method in methods:
        for seed in seeds:
            run_dir = Path(runs_dir) / f"{method}-s{seed}"
            if (METHODS[method].preset is not None and run_dir.is_dir() and any(run_dir.iterdir())
                    and not _same_config(run_dir, method_config(method, seed, budget))):
                found.append(run_dir)
    return found


def run_method(method: str, seed: int, budget: Budget, runs_dir: str | Path, *, force: bool = False,
               family: str = "tiny") -> RunRecord:
    """Train (or reuse / resume) one arm in `runs_dir/<method>-s<seed>` and return its record. A run directory
    with another configuration is a `DifferentRunError`, unless `force` (then it is deleted and trained again).
    `family`: the presets the arm trains from (`method_config`; a study's model world passes its own)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHOD_ORDER)}")
    if METHODS[method].preset is None:
        return evaluate_base(seed, budget)
    from agents.checkpoint import latest_checkpoint
    from agents.config import save_config
    from agents.trainer import Trainer

    config = method_config(method, seed, budget, family)
    run_dir = Path(runs_dir) / f"{method}-s{seed}"
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and (run_dir / "config.yaml").is_file():
        summary = json.loads(summary_path.read_text())
        if not summary.get("interrupted") and _same_config(run_dir, config):
            return record_from_eval(method, seed, evals_from_run_dir(run_dir), summary["wall_s"], str(run_dir))
    if latest_checkpoint(run_dir) is not None and _same_config(run_dir, config):
        trainer = Trainer.resume(run_dir)
    else:
        if run_dir.exists():
            if not force and not _same_config(run_dir, config) and any(run_dir.iterdir()):
                raise DifferentRunError(run_dir)
            import shutil

            shutil.rmtree(run_dir)  # this arm's run with this config that never checkpointed, or forced
        trainer = Trainer.new(config, run_dir)
        if config.env.pool.kind != "split":
            from agents.train_pool import training_source

            (run_dir / "pool.txt").write_text(f"{training_source(config.env)!r}\n")
    with open(run_dir / "train.log", "a") as log_file, contextlib.redirect_stdout(log_file), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*size_average and reduce args.*")
        summary = trainer.run()  # the trainer's own before/after tables go to train.log
    save_config(config, run_dir / "config.yaml")
    evals = [(s, r) for s, r in trainer.evals]
    return record_from_eval(method, seed, evals, summary["wall_s"], str(run_dir))


def _same_config(run_dir: Path, config) -> bool:
    from agents.config import from_dict, read_yaml

    try:
        saved = from_dict(read_yaml(run_dir / "config.yaml"))
    except Exception:  # noqa: BLE001 - unreadable: not the same
        return False
    return saved.to_dict() == config.to_dict()


def _worker(method: str, seed: int, budget: Budget, runs_dir: str, force: bool) -> dict[str, Any]:
    """Entry point of a `--jobs` worker process (one thread, like the main process)."""
    start_worker()
    return asdict(run_method(method, seed, budget, runs_dir, force=force))


# --- the whole comparison -------------------------------------------------------------------------
def reproduce(out_dir: str | Path, *, methods: Sequence[str] = DEFAULT_METHODS, seeds: Sequence[int] = (0,),
              budget: Budget = Budget(), jobs: int = 1, force: bool = False, log=print) -> dict[str, Any]:
    """Run every (method, seed) (default: every method, as `cuma reproduce` does), then write results.json,
    results.md, comparison.png and run_info.json.
    Finished arms with the same configuration are reused, interrupted ones resumed; an arm directory with
    another configuration is a `DifferentRunError` before anything trains, unless `force` replaces it."""
    from agents.experiments.report import aggregate, write_outputs

    if budget.kind != "equal_steps":
        raise ValueError("cuma reproduce compares its arms at equal steps; an equal-samples comparison is "
                         "`cuma study --budget equal_samples`")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHOD_ORDER)}")
    methods = [m for m in METHOD_ORDER if m in set(methods)]
    out = Path(out_dir)
    runs_dir = out / "runs"
    different = different_runs(runs_dir, methods, seeds, budget)
    if different and not force:
        raise DifferentRunError(different[0])
    for run_dir in different:
        log(f"replacing {run_dir} (forced): it holds a run with a different configuration")
    runs_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _quiet_transformers()
    started = time.perf_counter()
    base = _ensure_base(budget)
    tasks = [(m, s) for s in seeds for m in methods]
    records: list[RunRecord] = []
    if jobs <= 1:
        for i, (m, s) in enumerate(tasks, 1):
            log(f"[{i}/{len(tasks)}] {m} seed {s} ...")
            record = run_method(m, s, budget, runs_dir, force=force)
            records.append(record)
            log(f"[{i}/{len(tasks)}] {m} seed {s}: mean greedy {record.mean_acc:.3f} "
                f"(peak {record.peak_mean_acc:.3f}), collapse {record.collapse:.2f}, {record.wall_s:.0f} s")
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(m, s, pool.submit(_worker, m, s, budget, str(runs_dir), force)) for m, s in tasks]
            for m, s, future in futures:
                records.append(RunRecord(**future.result()))
                log(f"{m} seed {s}: mean greedy {records[-1].mean_acc:.3f}, {records[-1].wall_s:.0f} s")
    results = aggregate(records)
    info = {"methods": {m: asdict(METHODS[m]) for m in methods}, "seeds": list(seeds), "budget": asdict(budget),
            "jobs": jobs, "total_wall_s": round(time.perf_counter() - started, 1), "base": base,
            "nocurated_pool_size": NOCURATED_POOL_SIZE, "records": [asdict(r) for r in records]}
    write_outputs(out, results, records, info)
    return results


def _ensure_base(budget: Budget) -> dict[str, Any]:
    """Build the tiny base once, before any arm (parallel workers would otherwise wait on its lock). Returns
    which base the arms start from: its path, and for the tiny base its weights' sha256 and whether they are
    the published ones (a local build of the same config on another CPU is another base)."""
    from agents.tiny.cache import ensure_tiny_base, is_built, read_metadata

    path = method_config("base", 0, budget).model.path
    built = ensure_tiny_base(progress=True) if path == "tiny" else Path(path).expanduser()
    if not is_built(built):  # a hub id or another model: no build metadata
        return {"path": path}
    meta = read_metadata(built)
    return {"path": path, "weights_sha256": meta.get("weights_sha256"), "source": meta.get("source", "trained")}


def start_worker() -> None:
    """What a `--jobs` worker process (reproduce's methods, a study's cells, drawn bases) sets first: one torch
    thread, like the main process (two processes of two threads thrash two cores), and quiet model loads."""
    import torch

    torch.set_num_threads(1)
    _quiet_transformers()


def _quiet_transformers() -> None:
    """No per-load progress bars of transformers in the reproduce log (one line per arm instead)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
