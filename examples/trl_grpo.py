"""TRL's `GRPOTrainer` on CuMa: the tiny base, `CuMa-Arith-v0`, the masked-majority reward and the
agreement-gated curriculum, on a CPU.

The world and the knobs are the default preset's (`agents/presets/tiny-cuma-gated.yaml`: reward, mask
threshold, schedule and its options, 16 prompts x 8 samples per step, temperature, 48 new tokens, learning rate
and its schedule); TRL does the sampling, advantages and the policy update. The curriculum hears every group
the reward scores (and probes the next level with the model being trained), so the level advances during the
run; its state is saved with TRL's checkpoints (`--save-every`) and restored by `--resume`.

    python examples/trl_grpo.py --steps 3
    python examples/trl_grpo.py --steps 80 --out runs/trl --save-model runs/trl/model --json runs/trl/summary.json
    python examples/trl_grpo.py --model smollm2-135m --steps 1   # a real LLM: 2 prompts x 4 samples x 32 tokens

`--model` is what `model.path` accepts (`tiny`, `smollm2-135m`, a model dir, a hub id; agents.policy.model_source).
Prompts are one-message chats, so TRL renders them with the model's chat template. A model other than the tiny
base gets tiny rollout defaults (`QUICK`; `--prompts-per-step`, `--group-size`, `--max-new-tokens` override).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from agents.config import TINY_MODEL, load_config
from agents.policy import load_model, model_source
from agents.tiny.model import load_tiny_base
from cuma_env.catalog import get_task, make_source
from cuma_env.episode import vote_metrics
from cuma_env.integrations.trl import CuMaCallback, CurriculumFeed, generation_probe, make_reward_func
from curricula import CurriculumStream

PRESET = "tiny-cuma-gated"
# rollout for a real LLM on a CPU: one step in a minute or two (8 sequences), sized to run, not to learn
QUICK = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 32}


def load_policy(path: str):
    """(model, tokenizer, is the tiny base): the tiny base through its checked loader, others through the agent's."""
    source = model_source(path)
    if (Path(source) / "cuma_base.json").is_file():
        return *load_tiny_base(source), True
    return *load_model(source, torch.device("cpu")), False


class StepLog(TrainerCallback):
    """One line per optimizer step: wall seconds, the curriculum's level, the mask rate of the step's groups."""

    def __init__(self, reward, feed, quiet: bool = False):
        self.reward, self.feed, self.quiet = reward, feed, quiet
        self.rows: list[dict] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        infos = self.reward.last_infos
        summary = self.feed.summary()
        votes = vote_metrics(infos)  # the agent's metrics.csv columns, from the same function
        row = {"step": state.global_step, "step_s": time.perf_counter() - self._t0, "level": summary.get("level"),
               "mask_rate": votes["mask_rate"], "agreement": votes["agreement"], "probes": summary.get("probes"),
               "problems": [i["problem_id"] for i in infos]}
        self.rows.append(row)
        if not self.quiet:
            print(f"step {row['step']:4d}  {row['step_s']:.2f} s  level {row['level']}  "
                  f"mask {row['mask_rate']:.2f}  agreement {row['agreement']:.2f}", flush=True)


def build(args: argparse.Namespace):
    """(trainer, reward, feed, step log) for the preset's world on TRL."""
    model, tokenizer, tiny = load_policy(args.model)
    overrides = [f"seed={args.seed}", f"model.path={args.model}"]
    for key, quick in QUICK.items():  # a flag wins; else a real LLM gets QUICK, the tiny base the preset's value
        value = getattr(args, key) if getattr(args, key) is not None else None if tiny else quick
        if value is not None:
            overrides.append(f"rollout.{key}={value}")
    config = load_config(preset=PRESET, overrides=overrides)
    e, r, t, c = config.env, config.rollout, config.train, config.curriculum
    template = get_task(e.id).template  # the task's prompt template, for the probe as for the feed
    probe = generation_probe(model, tokenizer, template=template, group_size=r.group_size, min_votes=e.min_votes,
                             temperature=r.temperature, max_new_tokens=r.max_new_tokens,
                             seed=args.seed) if c.probe else None
    stream = CurriculumStream({"name": c.schedule, **c.options}, make_source(e.id, seed=e.source_seed),
                              seed=args.seed, probe=probe)
    feed = CurriculumFeed(stream, template=template)
    reward = make_reward_func(e.reward, min_votes=e.min_votes, group_size=r.group_size, stream=feed)
    grpo = GRPOConfig(
        output_dir=str(args.out), max_steps=args.steps, seed=args.seed, use_cpu=True, report_to="none",
        per_device_train_batch_size=r.prompts_per_step * r.group_size, gradient_accumulation_steps=1,
        num_generations=r.group_size, max_completion_length=r.max_new_tokens, temperature=r.temperature,
        top_p=r.top_p, top_k=0, learning_rate=t.lr, lr_scheduler_type=t.schedule, warmup_steps=t.warmup_steps,
        max_grad_norm=t.grad_clip, weight_decay=t.weight_decay, beta=t.kl_coef, epsilon=t.clip_epsilon,
        shuffle_dataset=False, ignore_data_skip=True, logging_steps=args.log_every, disable_tqdm=True,
        save_strategy="steps" if args.save_every else "no", save_steps=args.save_every or 500,
        # TRL turns both on by default: float32 on a CPU, as the agent trains there; the tiny model needs no
        # activation checkpointing, which only slows a step
        bf16=False, activation_checkpointing=False)
    log = StepLog(reward, feed, quiet=args.quiet)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward, args=grpo,
                          train_dataset=feed.dataset(), callbacks=[CuMaCallback(reward), log])
    return trainer, reward, feed, log


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=TINY_MODEL,
                        help="tiny (default) | smollm2-135m | a model dir | a hub id, as model.path takes")
    parser.add_argument("--prompts-per-step", type=int, default=None, help="default: the preset's (16); 2")
    parser.add_argument("--group-size", type=int, default=None, help="default: the preset's (8); 4")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the preset's (48); 32")
    parser.add_argument("--out", type=Path, default=Path("runs/trl-grpo"), help="TRL's output_dir (checkpoints)")
    parser.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: none)")
    parser.add_argument("--resume", default=None, help="a checkpoint folder, or 'last' (the newest under --out)")
    parser.add_argument("--save-model", type=Path, default=None, help="save the final model and tokenizer here")
    parser.add_argument("--json", type=Path, default=None, help="write the run's summary here")
    parser.add_argument("--log-every", type=int, default=10, help="TRL's logging_steps")
    parser.add_argument("--quiet", action="store_true", help="no per-step line")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    trainer, reward, feed, log = build(args)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if args.resume == "last" else args.resume)
    wall = time.perf_counter() - start
    if args.save_model is not None:
        trainer.save_model(str(args.save_model))
    timed = [row["step_s"] for row in log.rows[1:]] or [row["step_s"] for row in log.rows]
    summary = {"steps": len(log.rows), "wall_s": round(wall, 2),
               "step_s_median": round(statistics.median(timed), 4) if timed else None,
               "step_s_mean": round(statistics.fmean(timed), 4) if timed else None,
               "final_level": feed.summary().get("level"), "curriculum": feed.summary(), "rows": log.rows}
    print(f"{summary['steps']} steps in {wall:.1f} s (median step {summary['step_s_median']} s), "
          f"final level {summary['final_level']}, groups voted {feed.observed}, "
          f"probes {summary['curriculum'].get('probes')}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1, default=str))
    return summary


if __name__ == "__main__":
    main()
