"""The same world and budget trained by TRL (our reward and curriculum) and by our agent: held-out accuracy and
step time side by side.

    OMP_NUM_THREADS=1 python benchmarks/trl_vs_agent.py [--seeds 0 1 2] [--steps 80] [--out runs/trl-vs-agent]

World: the embedded tiny base on CuMa-Arith-v0, the default preset's reward (masked majority, 6 of 8),
agreement-gated curriculum with probes, 16 prompts x 8 samples per step, T=0.6, 48 new tokens, lr 1e-5 with
warm-up and cosine. `agent`: `cuma train --preset tiny-cuma-gated train.steps=STEPS seed=S eval.every=0`
(TorchRL; evaluations only at the start and the end, which never touch the training stream).
`trl`: `examples/trl_grpo.py --steps STEPS --seed S` (TRL's GRPOTrainer with `make_reward_func`,
`CurriculumFeed` and `generation_probe`, reading the same preset). Each run is its own process, one at a time,
one thread. Then both final models are evaluated the same way here: greedy pass@1 on the first
`--n-per-level` problems of each level of the arith test split (`agents.evaluation.evaluate`), and the base
once for reference. Step time: the median over a run's steps, the first (warm-up) left out, as each trainer
times its own optimizer step (generation, vote, curriculum and probes, update). A finished run is not run
again (delete its folder to redo it); `--json` writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAINERS = ("agent", "trl")
MAX_NEW_TOKENS = 48  # agents.tiny.corpus.MAX_COMPLETION_TOKENS, the preset's rollout.max_new_tokens


def run_agent(seed: int, steps: int, folder: Path) -> dict:
    summary = folder / "summary.json"
    if not summary.is_file():
        _run([sys.executable, "-m", "agents.cli", "train", "--preset", "tiny-cuma-gated", f"train.steps={steps}",
              f"seed={seed}", "eval.every=0", "output.progress=false", "--out", str(folder)], folder / "log.txt")
    data = json.loads(summary.read_text())
    return {"model": folder / "model", "step_s_median": data["step_s_median"], "wall_s": data["wall_s"],
            "final_level": data["curriculum"].get("level"), "probes": data["curriculum"].get("probes")}


def run_trl(seed: int, steps: int, folder: Path) -> dict:
    summary = folder / "summary.json"
    if not summary.is_file():
        _run([sys.executable, str(REPO / "examples" / "trl_grpo.py"), "--steps", str(steps), "--seed", str(seed),
              "--out", str(folder / "trl"), "--save-model", str(folder / "model"), "--json", str(summary), "--quiet"],
             folder / "log.txt")
    data = json.loads(summary.read_text())
    return {"model": folder / "model", "step_s_median": data["step_s_median"], "wall_s": data["wall_s"],
            "final_level": data["final_level"], "probes": data["curriculum"].get("probes")}


def _run(cmd: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode
    if code != 0:
        raise SystemExit(f"failed ({code}) after {time.perf_counter() - start:.0f} s; see {log}")
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def heldout_greedy(model: str | Path, n_per_level: int) -> dict[str, float]:
    """Greedy pass@1 per level on the arith test split (the agent's own evaluation code)."""
    from agents.config import ModelConfig, RolloutConfig
    from agents.evaluation import bench_problems, evaluate
    from agents.policy import build_policy

    policy = build_policy(ModelConfig(path=str(model), device="cpu"), RolloutConfig(max_new_tokens=MAX_NEW_TOKENS))
    problems, template = bench_problems("arith", n_per_level)
    result = evaluate(policy, problems, template, samples=1, temperature=0.6, max_new_tokens=MAX_NEW_TOKENS, seed=0)
    return {str(level): row["greedy"] for level, row in result["levels"].items()}


def table(rows: list[dict], levels: list[str]) -> str:
    head = "| trainer | seed | " + " | ".join(f"L{lv}" for lv in levels) + " | mean | final level | median step s |"
    lines = [head, "|" + "---|" * (len(levels) + 5)]
    for row in rows:
        acc = [row["greedy"][lv] for lv in levels]
        step = "" if row.get("step_s_median") is None else f"{row['step_s_median']:.2f}"
        level = "" if row.get("final_level") is None else str(row["final_level"])
        lines.append(f"| {row['trainer']} | {row['seed']} | " + " | ".join(f"{a:.3f}" for a in acc)
                     + f" | {statistics.fmean(acc):.3f} | {level} | {step} |")
    for trainer in TRAINERS:
        runs = [r for r in rows if r["trainer"] == trainer]
        if len(runs) > 1:
            acc = [statistics.fmean(r["greedy"][lv] for r in runs) for lv in levels]
            step = statistics.fmean(r["step_s_median"] for r in runs)
            lines.append(f"| {trainer} | mean of {len(runs)} | " + " | ".join(f"{a:.3f}" for a in acc)
                         + f" | {statistics.fmean(acc):.3f} | | {step:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--n-per-level", type=int, default=100, help="held-out problems per level (preset: 100)")
    parser.add_argument("--only", choices=TRAINERS, default=None, help="run one trainer only")
    parser.add_argument("--out", type=Path, default=Path("runs/trl-vs-agent"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    trainers = [args.only] if args.only else list(TRAINERS)
    runners = {"agent": run_agent, "trl": run_trl}
    rows = [{"trainer": "base", "seed": "-", "greedy": heldout_greedy("tiny", args.n_per_level)}]
    for seed in args.seeds:
        for trainer in trainers:
            run = runners[trainer](seed, args.steps, args.out / f"{trainer}-s{seed}")
            rows.append({"trainer": trainer, "seed": seed, **run, "model": str(run["model"]),
                         "greedy": heldout_greedy(run["model"], args.n_per_level)})
            print(table(rows, list(rows[0]["greedy"])), flush=True)
    result = {"steps": args.steps, "seeds": args.seeds, "n_per_level": args.n_per_level, "rows": rows}
    print(f"\n{args.steps} steps x 16 prompts x 8 samples, held-out greedy pass@1 ({args.n_per_level} per level):")
    print(table(rows, list(rows[0]["greedy"])))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
