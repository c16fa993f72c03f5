"""Ray scale-out on the tiny base: rollout throughput with 1 and 2 workers, the sync step against the
single-process agent's, and async against sync wall time for the same optimizer steps. Everything runs in this
process, one after the other, on the same config; ratios are against the single-process agent.

    OMP_NUM_THREADS=1 python benchmarks/bench_ray.py                   # about 4 minutes on 2 cores
    python benchmarks/bench_ray.py --steps 8 --prompts 16 --json out.json
    python benchmarks/bench_ray.py --model smollm2-135m --prompts 8 --batches 2 --skip-training   # a real LLM

Throughput = completions sampled and voted per second of `collect()` (median over batches after the first);
step time = the trainer's median `step_s`; wall = the sum of `step_s` over the run (evaluation excluded).
On a machine with fewer cores than workers + 1 the workers and the learner share cores: read the ratios with
the core count it prints. Results: docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def config_for(base: str, prompts: int, steps: int, *overrides: str, preset: str = "tiny-cuma-gated"):
    from agents.config import load_config

    return load_config(preset=preset, overrides=[
        f"model.path={base}", f"rollout.prompts_per_step={prompts}", f"train.steps={steps}", "eval.every=0",
        "model.num_threads=1",
        "eval.n_per_level=4", "eval.samples=1", "output.progress=false", "output.tensorboard=false",
        "output.checkpoint_every=1000", *overrides])


def throughput(rollout, batches: int, rows: int, between=None) -> float:
    """Completions per second of collect(), median over the batches after the first (warm-up)."""
    seconds = []
    for _ in range(batches + 1):
        start = time.perf_counter()
        rollout.collect()
        seconds.append(time.perf_counter() - start)
        if between is not None:
            between()
    return rows / statistics.median(seconds[1:])


def rollout_rates(base: str, prompts: int, batches: int, preset: str) -> dict[str, float]:
    import torch

    from agents.checkpoint import seed_everything
    from agents.distributed import RayRollout
    from agents.policy import build_policy
    from agents.rollout import Rollout

    torch.set_num_threads(1)
    rates = {}
    config = config_for(base, prompts, 1, preset=preset)
    rows = prompts * config.rollout.group_size
    seed_everything(0)
    policy = build_policy(config.model, config.rollout)
    single = Rollout(config, policy)
    rates["single process"] = throughput(single, batches, rows)
    single.shutdown()
    for workers in (1, 2):
        c = config_for(base, prompts, 1, f"rollout.workers={workers}", preset=preset)
        ray_rollout = RayRollout(c, policy)
        try:
            rates[f"ray, {workers} worker{'s' * (workers > 1)}"] = throughput(ray_rollout, batches, rows,
                                                                           ray_rollout.weights_updated)
        finally:
            ray_rollout.shutdown()
    return rates


def training_times(base: str, prompts: int, steps: int, preset: str) -> dict[str, dict[str, float]]:
    from agents.run_outputs import read_csv
    from agents.trainer import Trainer

    runs = {"single process": [], "ray sync, 2 workers": ["rollout.workers=2"],
            "ray async, 2 workers": ["rollout.workers=2", "rollout.mode=async", "rollout.max_staleness=1"]}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in runs.items():
            run_dir = Path(tmp) / name.replace(" ", "_").replace(",", "")
            Trainer.new(config_for(base, prompts, steps, *overrides, preset=preset), run_dir).run()
            step_s = [float(r["step_s"]) for r in read_csv(run_dir / "metrics.csv")]
            out[name] = {"median_step_s": statistics.median(step_s[1:]), "wall_s": sum(step_s)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (x 8 completions)")
    parser.add_argument("--batches", type=int, default=5, help="timed rollout batches per setting")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per training run")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--model", default="tiny", help="tiny (default), a packaged model (smollm2-135m) or a "
                        "model directory")
    parser.add_argument("--preset", default=None, help="default: tiny-cuma-gated for tiny, smollm2-ttrl otherwise "
                        "(no mask and no probes: every batch samples the same work)")
    parser.add_argument("--skip-training", action="store_true", help="measure the rollout throughput only")
    args = parser.parse_args(argv)
    from agents.policy import model_source

    base = model_source(args.model)  # installed and cached on first use
    preset = args.preset or ("tiny-cuma-gated" if args.model == "tiny" else "smollm2-ttrl")
    print(f"{os.cpu_count()} cores; model {base} (preset {preset}); {args.prompts} prompts x 8 per batch; "
          "one thread per process", flush=True)
    rates = rollout_rates(base, args.prompts, args.batches, preset)
    print("\n| rollout | completions/s | vs single process |\n|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} | {rate / rates['single process']:.2f}x |")
    if args.skip_training:
        if args.json is not None:
            args.json.write_text(json.dumps({"cores": os.cpu_count(), "model": args.model, "preset": preset,
                                             "prompts": args.prompts, "rates": rates}, indent=2))
        return 0
    times = training_times(base, args.prompts, args.steps, preset)
    single = times["single process"]
    print(f"\n| training ({args.steps} steps) | median step s | vs single process | wall s (steps) | vs sync |")
    print("|---|---|---|---|---|")
    sync_wall = times["ray sync, 2 workers"]["wall_s"]
    for name, t in times.items():
        print(f"| {name} | {t['median_step_s']:.3f} | {t['median_step_s'] / single['median_step_s']:.2f}x | "
              f"{t['wall_s']:.1f} | {t['wall_s'] / sync_wall:.2f}x |")
    if args.json is not None:
        args.json.write_text(json.dumps({"cores": os.cpu_count(), "model": args.model, "preset": preset,
                                         "prompts": args.prompts, "rates": rates, "training": times}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
