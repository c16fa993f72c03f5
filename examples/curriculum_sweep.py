"""Run several curricula over the same env, budget and policy; write a per-group CSV, a summary CSV and a plot.

    python examples/curriculum_sweep.py                       # the embedded tiny weak base, 5 schedules
    python examples/curriculum_sweep.py --policy random --groups 64      # smoke run (random weights)
    python examples/curriculum_sweep.py --schedules agreement_gated,sequential --groups 2000 \\
        --kwargs '{"agreement_gated": {"window": 64}}' --out runs/sweep
    python examples/curriculum_sweep.py --train --groups 1920 --set eval.n_per_level=50   # train each schedule

A *policy* is a completions generator `policy(prompts, n) -> list[list[str]]` (n completions per prompt).
If it also has `learn(batch)`, the sweep calls it after every batch with `[(prompt, completions, info), ...]`:
that is where an RL agent trains (e.g. one GRPO step); without it the policy is frozen and the sweep shows
how each schedule reacts to one fixed model. `run_sweep(..., policy_factory=...)` builds a fresh policy per
schedule so every schedule starts from the same base.

`--train` trains instead: each schedule gets a fresh copy of the base (`--policy tiny-base` or `random`)
trained by the real agent, `agents.trainer.Trainer` (TorchRL collector, group vote, GRPO `Learner.step`),
with the default preset's config plus the sweep's env, schedule, group size, mask threshold and temperature,
`--batch` prompts per optimizer step and ceil(groups / batch) steps (`--set key=value` changes any other
agent key, e.g. `train.lr=3e-5`). Each run keeps its own run directory (`OUT/runs/<schedule>`: metrics.csv,
eval.csv, checkpoints, report.png); the sweep's CSVs and plot come from the groups the agent voted on (their
curriculum columns are the curriculum after that step, not after each group), and `heldout.csv` gathers
the runs' held-out evaluations (before and after training).

Logged per group (CSV `groups.csv`): schedule, batch, group, level, curriculum_level (after the update),
expected_level (the mean level the curriculum draws from after the update), problem_id, agreement, masked,
parse_rate, majority_count, majority, majority_correct (only when the problems carry a hidden answer; never
shown to the schedule), reward, concentration. `summary.csv`: per schedule and level,
groups, agreement, mask_rate, parse_rate, unanimous_rate, majority_accuracy. `sweep.png`: curriculum level
over groups, and agreement / mask rate / majority accuracy per level for each schedule.

AgreementGated gets a probe hook built from the same policy (sample, score, never train); `--no-probe`
turns it off (the gate then uses the current level's statistics alone).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import cuma_env  # noqa: E402
from cuma_env.episode import probe_hook  # noqa: E402
from cuma_env.voting import DEFAULT_MIN_VOTES  # noqa: E402
from curricula import CurriculumWrapper, make_schedule  # noqa: E402

Policy = Callable[[Sequence[str], int], list[list[str]]]
HELDOUT_COLUMNS = ("schedule", "step", "level", "n", "greedy", "pass1", "maj")
DEFAULT_SCHEDULES = ("sequential", "agreement_gated", "learning_progress", "uniform", "fixed")
CSV_COLUMNS = ("schedule", "batch", "group", "level", "curriculum_level", "expected_level", "problem_id",
               "agreement", "masked", "parse_rate", "majority_count", "majority", "majority_correct", "reward",
               "concentration")


# --- policies --------------------------------------------------------------------------------------
class HFSampler:
    """Samples `n` completions per prompt from a causal LM with `generate` (left padding, no special tokens)."""

    def __init__(self, model: Any, tokenizer: Any, *, temperature: float = 0.6, max_new_tokens: int = 48,
                 seed: int = 0, batch_prompts: int = 64):
        import torch

        self.torch, self.model, self.tokenizer = torch, model.eval(), tokenizer
        self.temperature, self.max_new_tokens, self.batch_prompts = temperature, max_new_tokens, batch_prompts
        self.generator_seed = seed
        torch.manual_seed(seed)

    def __call__(self, prompts: Sequence[str], n: int) -> list[list[str]]:
        tok, out = self.tokenizer, []
        side, tok.padding_side = tok.padding_side, "left"
        try:
            with self.torch.no_grad():
                for start in range(0, len(prompts), self.batch_prompts):
                    chunk = list(prompts[start:start + self.batch_prompts])
                    enc = tok(chunk, padding=True, return_tensors="pt", add_special_tokens=False)
                    seqs = self.model.generate(**enc, do_sample=True, temperature=self.temperature, top_k=None,
                                               top_p=None, num_return_sequences=n, max_new_tokens=self.max_new_tokens,
                                               pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
                    texts = tok.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                    out.extend(texts[i * n:(i + 1) * n] for i in range(len(chunk)))
        finally:
            tok.padding_side = side
        return out


class SimulatedPolicy:
    """A torch-free stand-in for the weak base on the arithmetic ladder (for quick looks at schedules).

    Each sample is right with the per-level pass@1 (T=0.6) of the prototype's weak base
    (docs/label-free-tiny-world.md, "Before the package"); wrong answers fall near the truth, so on hard levels
    they collide like the real model's. It reads the expression from the prompt.
    """

    PASS1 = {1: 0.80, 2: 0.52, 3: 0.26, 4: 0.07, 5: 0.03}

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def __call__(self, prompts: Sequence[str], n: int) -> list[list[str]]:
        out = []
        for prompt in prompts:
            terms = re.findall(r"([-+]?)\s*(\d+)", prompt.split("?")[0].split("is")[-1])
            nums = [int(d) for _, d in terms]
            truth = sum(-v if sign == "-" else v for (sign, _), v in zip(terms, nums))
            if len(nums) > 2:
                level = 5
            elif any(sign == "-" for sign, _ in terms):
                level = 4
            else:
                level = 1 if max(nums) < 10 else (2 if min(nums) < 10 else 3)
            p = self.PASS1[level]
            answers = [truth if self.rng.random() < p else truth + int(self.rng.choice([-10, -2, -1, 1, 2, 10]))
                       for _ in range(n)]
            out.append([f"\\boxed{{{a}}}" for a in answers])
        return out


def load_policy(kind: str, *, temperature: float = 0.6, seed: int = 0, max_new_tokens: int = 48) -> Policy:
    """`tiny-base` (the embedded weak base, installed and cached on first use), `random` (random tiny weights),
    or `simulated` (no torch)."""
    if kind == "simulated":
        return SimulatedPolicy(seed)
    import torch

    torch.set_num_threads(1)
    if kind == "random":
        from agents.tiny.model import build_tiny_model

        model, tokenizer = build_tiny_model(seed=seed)
    elif kind == "tiny-base":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from agents.tiny.cache import ensure_tiny_base

        path = ensure_tiny_base(progress=sys.stderr.isatty())  # first use installs the published weights
        model, tokenizer = AutoModelForCausalLM.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))
    else:
        raise ValueError(f"unknown policy {kind!r}; choose tiny-base, random or simulated")
    return HFSampler(model, tokenizer, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens)


# --- the sweep -------------------------------------------------------------------------------------
def run_schedule(label: str, spec: dict[str, Any], *, env_id: str, policy: Policy, groups: int, batch: int,
                 group_size: int, seed: int, min_votes: int | float = DEFAULT_MIN_VOTES, probe: bool = True,
                 env_kwargs: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One schedule over `groups` scored prompts, `batch` prompts per policy call; returns one row per group."""
    schedule = make_schedule(dict(spec))
    envs = [gym.make(env_id, group_size=group_size, min_votes=min_votes, **(env_kwargs or {})) for _ in range(batch)]
    base = envs[0].unwrapped
    # the probe hook for AgreementGated: a group per problem from `policy`, scored, never trained on
    sample = lambda prompts: policy(prompts, group_size)  # noqa: E731
    hook = probe_hook(sample, base.template, base.config) if probe and schedule.name == "agreement_gated" else None
    wrapped = [CurriculumWrapper(env, schedule, seed=seed, probe=hook if i == 0 else None)
               for i, env in enumerate(envs)]
    rows: list[dict[str, Any]] = []
    learn = getattr(policy, "learn", None)
    for b in range(-(-groups // batch)):
        n = min(batch, groups - b * batch)
        prompts = [wrapped[i].reset(seed=(seed + i) if b == 0 else None)[0] for i in range(n)]
        completions = policy(prompts, group_size)
        trained = []
        for i in range(n):
            _, _, _, _, info = wrapped[i].step(completions[i])
            trained.append((prompts[i], completions[i], info))
            rows.append(group_row(label, b, len(rows), info, info["curriculum"]))
        if learn is not None:
            learn(trained)
    for env in wrapped:
        env.close()
    return rows


def group_row(label: str, batch: int, group: int, info: dict[str, Any], cur: dict[str, Any]) -> dict[str, Any]:
    """One `groups.csv` row from a scored group's info and the curriculum summary `cur`."""
    correct = info.get("majority_correct")
    return {"schedule": label, "batch": batch, "group": group, "level": info["level"],
            "curriculum_level": cur["level"], "expected_level": expected_level(cur["weights"]),
            "problem_id": info["problem_id"], "agreement": round(info["agreement"], 4), "masked": int(info["masked"]),
            "parse_rate": round(info["parse_rate"], 4), "majority_count": info["majority_count"],
            "majority": info["majority"], "majority_correct": "" if correct is None else int(correct),
            "reward": round(float(np.mean(info["rewards"])), 4), "concentration": cur.get("concentration", "")}


def expected_level(weights: dict[str, float]) -> float | str:
    """The mean level of the schedule's mixture (its `weights` summary); '' for an unleveled source."""
    if "none" in weights:
        return ""
    return round(sum(int(k) * w for k, w in weights.items()) / max(sum(weights.values()), 1e-12), 4)


def run_sweep(schedules: dict[str, dict[str, Any]], *, policy_factory: Callable[[], Policy], **kwargs: Any
              ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Every schedule (label -> {"name": ..., **kwargs}) with a fresh policy; returns (rows, seconds per label)."""
    rows, seconds = [], {}
    for label, spec in schedules.items():
        start = time.perf_counter()
        rows += run_schedule(label, spec, policy=policy_factory(), **kwargs)
        seconds[label] = round(time.perf_counter() - start, 2)
    return rows, seconds


# --- training each schedule with the agent (--train) -------------------------------------------------
def train_config(spec: dict[str, Any], *, env_id: str, groups: int, batch: int, group_size: int, seed: int,
                 min_votes: int | float = DEFAULT_MIN_VOTES, probe: bool = True, temperature: float = 0.6,
                 model_path: str = "tiny", overrides: Sequence[str] = ()) -> Any:
    """The agent's `Config` for one schedule: the default preset plus the sweep's settings, then `overrides`."""
    from agents.config import load_config

    options = {k: v for k, v in spec.items() if k != "name"}
    config = load_config(overrides=[
        f"name=sweep-{spec['name']}", f"seed={seed}", f"model.path={model_path}", f"env.id={env_id}",
        f"env.min_votes={min_votes}", f"rollout.group_size={group_size}", f"rollout.prompts_per_step={batch}",
        f"rollout.temperature={temperature}", f"train.steps={-(-groups // batch)}", "eval.every=0",
        f"curriculum.probe={probe}", "output.progress=false", "output.tensorboard=false"])
    return config.replace({"curriculum.schedule": spec["name"], "curriculum.options": options}).replace(
        list(overrides))


def train_schedule(label: str, config: Any, run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train a fresh copy of the base under `config` with the agent; returns (group rows, held-out rows)."""
    from agents.run_outputs import read_csv
    from agents.trainer import Trainer

    rows: list[dict[str, Any]] = []

    class GroupLoggingTrainer(Trainer):
        """The agent's trainer, also keeping one sweep row per group voted in each step."""

        def _metrics(self, batch: Any, learn: Any) -> dict[str, Any]:
            cur, first = self.rollout.summary(), len(rows)
            rows.extend([group_row(label, self.step - 1, first + i, info, cur) for i, info in enumerate(batch.infos)])
            return super()._metrics(batch, learn)

    GroupLoggingTrainer.new(config, run_dir).run()
    heldout = [{"schedule": label, **{k: row[k] for k in HELDOUT_COLUMNS[1:]}}
               for row in read_csv(run_dir / "eval.csv")]
    return rows, heldout


def random_base(out: Path, seed: int) -> str:
    """`--policy random --train`: the tiny architecture with random weights, saved for the agent to load."""
    from agents.tiny.model import build_tiny_model

    model, tokenizer = build_tiny_model(seed=seed)
    model.save_pretrained(out / "random-base")
    tokenizer.save_pretrained(out / "random-base")
    return str(out / "random-base")


def run_training_sweep(schedules: dict[str, dict[str, Any]], out: Path, **kwargs: Any
                       ) -> tuple[list[dict[str, Any]], dict[str, float], list[dict[str, Any]]]:
    """Every schedule trained from the same base (kwargs: `train_config`'s); returns (rows, seconds, held-out)."""
    rows, seconds, heldout = [], {}, []
    for label, spec in schedules.items():
        start = time.perf_counter()
        run_dir = out / "runs" / label
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)  # a sweep starts every schedule afresh
        mine, evals = train_schedule(label, train_config(spec, **kwargs), run_dir)
        rows += mine
        heldout += evals
        seconds[label] = round(time.perf_counter() - start, 2)
    return rows, seconds, heldout


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    buckets: dict[tuple[str, Any], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        buckets[(row["schedule"], row["level"])].append(row)
    out = []
    for (label, level), items in buckets.items():
        labelled = [r["majority_correct"] for r in items if r["majority_correct"] != ""]
        out.append({"schedule": label, "level": level, "groups": len(items),
                    "agreement": round(float(np.mean([r["agreement"] for r in items])), 4),
                    "mask_rate": round(float(np.mean([r["masked"] for r in items])), 4),
                    "parse_rate": round(float(np.mean([r["parse_rate"] for r in items])), 4),
                    "unanimous_rate": round(float(np.mean([r["agreement"] >= 1.0 for r in items])), 4),
                    "majority_accuracy": round(float(np.mean(labelled)), 4) if labelled else ""})
    return sorted(out, key=lambda r: (r["schedule"], -1 if r["level"] is None else r["level"]))


def write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r["schedule"] for r in rows))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    for k, label in enumerate(labels):
        mine = [r for r in rows if r["schedule"] == label]
        ax.step([r["group"] for r in mine], [(r["expected_level"] or 0) + 0.03 * k for r in mine], where="post",
                label=label)
    ax.set(title="curriculum level over groups (mean level of the mixture)", xlabel="scored groups",
           ylabel="level")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    panels = ((axes[0, 1], "agreement", "agreement per level"), (axes[1, 0], "mask_rate", "mask rate per level"),
              (axes[1, 1], "majority_accuracy", "majority accuracy per level (hidden answers; diagnostics)"))
    for ax, key, title in panels:
        for label in labels:
            pts = [(s["level"], s[key]) for s in summary if s["schedule"] == label and s[key] != ""
                   and s["level"] is not None]
            if pts:
                ax.plot(*zip(*sorted(pts)), marker="o", label=label)
        ax.set(title=title, xlabel="level", ylim=(-0.02, 1.02))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="CuMa-Arith-v0", help="environment id (default CuMa-Arith-v0)")
    p.add_argument("--schedules", default=",".join(DEFAULT_SCHEDULES), help="comma-separated schedule names")
    p.add_argument("--kwargs", default="{}", help='JSON: {"schedule_name": {kwarg: value}} overrides')
    p.add_argument("--groups", type=int, default=640, help="scored prompts per schedule (the budget)")
    p.add_argument("--batch", type=int, default=16, help="prompts per policy call (sub-envs sharing a schedule)")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--min-votes", type=float, default=DEFAULT_MIN_VOTES,
                   help="mask threshold: count (>= 1) or share (< 1)")
    p.add_argument("--policy", default="tiny-base", choices=("tiny-base", "random", "simulated"))
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-probe", action="store_true", help="no probe hook for agreement_gated")
    p.add_argument("--train", action="store_true", help="train a fresh base per schedule with the agent (GRPO)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --train: an agent config override (repeatable), e.g. train.lr=3e-5")
    p.add_argument("--out", default="runs/curriculum_sweep", help="output folder")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [s.strip() for s in args.schedules.split(",") if s.strip()]
    overrides = json.loads(args.kwargs)
    defaults = {"sequential": {"steps_per_level": max(1, args.groups // len(cuma_env.LEVELS))}}
    schedules = {n: {"name": n, **defaults.get(n, {}), **overrides.get(n, {})} for n in names}
    from agents.commands import min_votes_option  # the CLI's reading, checked by cuma_env.voting.resolve_min_votes

    min_votes = min_votes_option(args.min_votes, args.group_size, "--group-size")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    common = dict(env_id=args.env, groups=args.groups, batch=args.batch, group_size=args.group_size, seed=args.seed,
                  min_votes=min_votes, probe=not args.no_probe)
    if args.train:
        if args.policy == "simulated":
            raise SystemExit("--train needs a model: --policy tiny-base or random")
        model_path = "tiny" if args.policy == "tiny-base" else random_base(out, args.seed)
        rows, seconds, heldout = run_training_sweep(schedules, out, temperature=args.temperature,
                                                    model_path=model_path, overrides=args.set, **common)
        write_csv(out / "heldout.csv", heldout, HELDOUT_COLUMNS)
        last = {r["schedule"]: r["step"] for r in heldout}
        for r in heldout:
            if r["step"] == last[r["schedule"]]:
                print(f"held-out after training: schedule={r['schedule']} level={r['level']} greedy={r['greedy']}")
    else:
        policy = load_policy(args.policy, temperature=args.temperature, seed=args.seed)  # frozen: one for all
        rows, seconds = run_sweep(schedules, policy_factory=lambda: policy, **common)
    summary = summarize(rows)
    write_csv(out / "groups.csv", rows, CSV_COLUMNS)
    write_csv(out / "summary.csv", summary, ("schedule", "level", "groups", "agreement", "mask_rate", "parse_rate",
                                             "unanimous_rate", "majority_accuracy"))
    plot(rows, summary, out / "sweep.png")
    for s in summary:
        print(" ".join(f"{k}={v}" for k, v in s.items()))
    print(f"seconds per schedule: {seconds}; total {time.perf_counter() - start:.1f} s; wrote "
          f"{out / 'groups.csv'}, {out / 'summary.csv'}, {out / 'sweep.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
