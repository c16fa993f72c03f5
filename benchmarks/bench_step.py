"""Step-speed benchmark: one GRPO step on the tiny base, ours vs TRL's GRPOTrainer vs a minimal PyTorch loop.

    OMP_NUM_THREADS=1 python benchmarks/bench_step.py [--rounds 11] [--steps 4] [--skip-trl] [--no-freeze]
                                                      [--json out.json]
    python benchmarks/bench_step.py --model smollm2-135m [--rounds 3 --steps 1 --threads 2]   # a real LLM
    pip install "cuma-gym[bench]"    # TRL, optional: without it the TRL row is skipped with a message

Same model (the embedded tiny base), batch (16 prompts x 8 completions), sampling (T=0.6, at most 48 new
tokens (`--max-new-tokens`), stop at EOS) and reward (TTRL's majority vote: 1 if a completion's answer is
the group's plurality answer) for every contender, one thread. The contenders alternate in one process,
`--steps` optimizer steps each per round, for `--rounds` rounds, so drifting machine load hits them alike;
medians over all timed steps (the first round is a warm-up and is not counted).

- `trl`: `trl.GRPOTrainer` with its defaults (TRL 1.16: beta 0, loss `dapo`, gradient checkpointing on)
  except what must match: batch 128 = 16 prompts x 8 generations, max_completion_length = the budget, temperature 0.6,
  lr 3e-5, CPU, no saving/logging. A step is timed from the end of the previous optimizer step to the end
  of this one (generation, reward, forward, backward, optimizer). Optional: `pip install "cuma-gym[bench]"`
  (skipped with a message when `trl` does not import).
- `minimal`: a plain PyTorch GRPO loop (HF `generate`, group-normalised advantages, one forward with grad
  over all 128 sequences, ratio-1 on-policy loss, backward, AdamW), timed by phase.
- `ours`: `agents.rollout.Rollout.collect()` + `agents.learner.Learner.step()` (TorchRL collector, HF
  `generate` with each distinct prompt prefilled once (`agents.shared_prefill`), group vote on the
  replay-buffer write path, GRPOLoss), timed as collect + learn. Three configs: `ours-ttrl`
  (preset tiny-ttrl: the same majority reward, no mask, levels uniform: the same work as the others),
  `ours-default` (the default preset tiny-cuma-gated: groups under its 6-of-8 mask and zero-advantage
  groups never enter forward/backward; probes included when they fire) and `ours-default-uniform` (the
  same mask and skipping on the others' problem mix). `ours-default` draws its problems from its
  curriculum, which starts on levels 1-2: shorter prompts and answers than the uniform mix the others
  sample, so its generation is cheaper; `ours-default-uniform` is the like-for-like comparison.

Garbage collection: `cuma train` collects and `gc.freeze()`s what its setup built (`agents.trainer.freeze_setup`)
so that Python's full collections stop traversing the model, env and collector. The bench does the same, once,
after building every contender (they share the process: one freeze covers TRL's and the minimal loop's setup
too, and none of them pays for traversing another's objects); `--no-freeze` measures without it. A full
collection lands on one step in ~10, so it moves the mean (the wall time of a run) more than the median: on
ours-default alone over 40 steps, ~26 ms per step on average unfrozen, ~1 ms frozen. The table gives both;
ratios use medians.

A real LLM (`--model smollm2-135m`, or a model directory): 8 prompts x 8 completions of at most 48 new tokens,
the env's default prompt (`Please reason step by step ... \\boxed{}`) through the model's chat template,
`--threads` torch threads (default 2: a 135M model is compute-bound), and the smollm2 presets. Contenders:
`trl`; `ours-ttrl` (preset smollm2-ttrl with `train.skip_uniform_groups=false`: every group enters
forward/backward, as in TRL: the like-for-like row); `ours-ttrl-torchrl-scorer` (the same with TorchRL's own
full-vocabulary log-softmax in the loss, `model.chosen_token_logprobs=false`: what the chosen-token scorer
saves); `ours-ttrl-skip` (the preset as shipped: groups whose advantages are all 0 stay out of the loss);
`ours-ttrl-fast` (the like-for-like row with the two opt-in speed-ups: a group's prompt forwarded once in the
loss, `model.shared_prompt_forward`, and finished rows dropped from generation, `rollout.compact_decode`, which
samples other tokens than HF's loop: the same work in kind, not the same tokens);
`minimal`. The default preset's curriculum rows are tiny-only.

Ratios are TRL's median step time over each contender's (> 1: faster than TRL). The shared machine's speed
drifts by 20-30% between minutes, so the table also gives the *paired* ratio: per timed round, TRL's median
over the contender's median in that same round, whose median and range over rounds show how stable a ratio
is. Timings depend on the machine and its load; tests never assert them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.tiny.corpus import MAX_COMPLETION_TOKENS  # noqa: E402  (after the path insert)

PROMPTS, GROUP, TEMPERATURE, LR = 16, 8, 0.6, 3e-5
MAX_NEW = MAX_COMPLETION_TOKENS  # the default preset's rollout.max_new_tokens; --max-new-tokens
# The default preset's mask and group skipping on the others' problem mix (levels uniform, no curriculum)
UNIFORM_LEVELS = ("curriculum.schedule=uniform", "curriculum.options={}", "curriculum.probe=false")
REAL_MODEL_PROMPTS, REAL_MODEL_LEVELS = 8, (1, 2, 3)  # --model: the smollm2 presets' step and levels


def majority_rewards(texts: list[str], group: int = GROUP) -> list[float]:
    """TTRL's reward per completion (groups are consecutive): 1 if its answer is the plurality answer."""
    from cuma_env.answers import extract_answer
    from cuma_env.voting import majority_vote

    rewards: list[float] = []
    for start in range(0, len(texts), group):
        answers = [extract_answer(t) for t in texts[start:start + group]]
        rewards.extend(majority_vote(answers, min_votes=1).rewards)
    return [float(r) for r in rewards]


def training_prompts(tokenizer, n: int, seed: int = 0, template: str = "compact",
                     levels: tuple[int, ...] | None = None) -> list[str]:
    """`n` rendered prompts (the env's exact text), levels uniform over the procedural train split."""
    import random

    from agents.policy import render_prompts
    from cuma_env.arithmetic import ArithmeticSource
    from cuma_env.prompting import format_prompt

    source, rng = ArithmeticSource("train"), random.Random(seed)
    problems = []
    for _ in range(n):
        level = rng.choice(levels or source.levels)
        problems.append(source.get(level, rng.randrange(source.size(level))))
    return render_prompts(tokenizer, [format_prompt(p, template) for p in problems])


# --- contenders ---------------------------------------------------------------------------------------
class Minimal:
    """A plain PyTorch GRPO step: generate, vote, advantages, forward, backward, AdamW."""

    name = "minimal"

    def __init__(self, base: str, prompts: list[str]):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(base)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        self.model.eval()  # no dropout (TorchRL's GRPO note); gradients still flow
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR)
        self.prompts, self.cursor = prompts, 0
        self.phases: dict[str, list[float]] = {"generate": [], "reward": [], "forward": [], "backward": []}

    def step(self) -> float:
        torch, tok = self.torch, self.tok
        batch = [self.prompts[(self.cursor + i) % len(self.prompts)] for i in range(PROMPTS)]
        self.cursor += PROMPTS
        t0 = time.perf_counter()
        enc = tok(batch, padding=True, return_tensors="pt")
        with torch.no_grad():
            seqs = self.model.generate(**enc, do_sample=True, temperature=TEMPERATURE, top_k=None, top_p=1.0,
                                       max_new_tokens=MAX_NEW, num_return_sequences=GROUP,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        t1 = time.perf_counter()
        width = enc["input_ids"].shape[1]
        completion = seqs[:, width:]
        texts = tok.batch_decode(completion, skip_special_tokens=True)
        rewards = torch.tensor(majority_rewards(texts)).view(PROMPTS, GROUP)
        adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).view(-1, 1)
        is_eos = completion == tok.eos_token_id
        first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), completion.shape[1])
        mask = (torch.arange(completion.shape[1])[None] <= first_eos[:, None]).float()
        attention = torch.cat([enc["attention_mask"].repeat_interleave(GROUP, 0), mask.long()], 1)
        t2 = time.perf_counter()
        logits = self.model(input_ids=seqs, attention_mask=attention).logits[:, width - 1:-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        loss = -((adv * torch.exp(logp - logp.detach())) * mask).sum() / mask.sum()
        t3 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        t4 = time.perf_counter()
        for key, value in zip(self.phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            self.phases[key].append(value)
        return t4 - t0


class Ours:
    """`Rollout.collect()` + `Learner.step()` of the agent, built as the trainer builds them."""

    def __init__(self, name: str, preset: str, base: str, overrides: tuple[str, ...] = ()):
        from agents.checkpoint import seed_everything
        from agents.config import load_config
        from agents.learner import Learner
        from agents.policy import build_policy
        from agents.rollout import Rollout

        self.name = name
        config = load_config(preset=preset, overrides=[
            f"model.path={base}", f"rollout.prompts_per_step={PROMPTS}", f"rollout.group_size={GROUP}",
            f"rollout.max_new_tokens={MAX_NEW}", f"rollout.temperature={TEMPERATURE}", f"train.lr={LR}",
            "train.steps=100000", "train.warmup_steps=0", *overrides])
        seed_everything(0)
        self.policy = build_policy(config.model, config.rollout, seed=0)
        self.rollout = Rollout(config, self.policy)
        self.learner = Learner(self.policy, config.train, config.rollout.group_size)
        self.phases: dict[str, list[float]] = {"collect": [], "learn": [], "trained_groups": []}
        self.levels: dict[int, int] = {}  # problems sampled per level: the workload behind the timings

    def step(self) -> float:
        t0 = time.perf_counter()
        batch = self.rollout.collect()
        t1 = time.perf_counter()
        stats = self.learner.step(batch.data)
        t2 = time.perf_counter()
        for info in batch.infos:
            self.levels[info["level"]] = self.levels.get(info["level"], 0) + 1
        self.phases["collect"].append(t1 - t0)
        self.phases["learn"].append(t2 - t1)
        self.phases["trained_groups"].append(stats.trained_groups)
        return t2 - t0

    def close(self) -> None:
        self.rollout.shutdown()


class TRL:
    """`trl.GRPOTrainer` with its defaults, run `steps` optimizer steps per call of `run`."""

    name = "trl"

    def __init__(self, base: str, prompts: list[str], workdir: Path):
        import torch
        import trl
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

        self.version = trl.__version__
        tok = AutoTokenizer.from_pretrained(base)
        tok.padding_side = "left"
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        times = self.times = []

        class Timer(TrainerCallback):
            last: float | None = None

            def on_step_begin(self, args, state, control, **kwargs):
                if Timer.last is None:
                    Timer.last = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                now = time.perf_counter()
                times.append(now - Timer.last)
                Timer.last = now

        self.timer = Timer
        args = trl.GRPOConfig(
            output_dir=str(workdir), use_cpu=True, bf16=False, per_device_train_batch_size=PROMPTS * GROUP,
            num_generations=GROUP, max_completion_length=MAX_NEW, temperature=TEMPERATURE, learning_rate=LR,
            max_steps=1, save_strategy="no", report_to=[], logging_steps=10**6, disable_tqdm=True, seed=0,
            dataloader_num_workers=0)
        self.args = args
        self.trainer = trl.GRPOTrainer(
            model=model, reward_funcs=[lambda prompts, completions, **kw: majority_rewards(list(completions))],
            args=args, train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tok,
            callbacks=[Timer()])

    def run(self, steps: int) -> list[float]:
        self.timer.last = None
        before = len(self.times)
        self.trainer.args.max_steps = steps
        with contextlib.redirect_stdout(io.StringIO()):  # its end-of-train metrics dict
            self.trainer.train()
        return self.times[before:]


# --- the run --------------------------------------------------------------------------------------
def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    global MAX_NEW, PROMPTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=11, help="alternation rounds; the first is a warm-up")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per contender per round")
    parser.add_argument("--skip-trl", action="store_true", help="do not run TRL even if it imports")
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    parser.add_argument("--no-freeze", action="store_true",
                        help="do not gc.freeze() after setup (the trainer does; see the docstring)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW,
                        help=f"generation budget of every contender (default {MAX_NEW}, the default preset's)")
    parser.add_argument("--base", type=Path, default=None,
                        help="tiny base directory (default: the cached embedded base, built on first use)")
    parser.add_argument("--model", default=None,
                        help="a real LLM instead of the tiny base: smollm2-135m or a model directory (8 prompts x 8, "
                             "48 tokens, its chat template and the smollm2 presets)")
    parser.add_argument("--contenders", default=None, metavar="A,B",
                        help="run only these (trl, minimal, ours-...; default all): five 135M contenders with their "
                             "optimizers do not fit 24 GB in one process, so with --model compare two or three at once")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 1 for the tiny base, 2 with --model)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.max_new_tokens < 1 or (args.threads or 1) < 1:
        parser.error("--rounds, --steps, --max-new-tokens and --threads must be >= 1")
    if args.model and args.base:
        parser.error("give --base (a tiny base) or --model (a real LLM), not both")
    MAX_NEW = args.max_new_tokens  # read by every contender's setup below
    threads = args.threads or (2 if args.model else 1)
    if args.model:
        PROMPTS = REAL_MODEL_PROMPTS

    import torch

    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from agents.tiny.cache import ensure_tiny_base

    if args.model:
        from agents.policy import model_source

        base = model_source(args.model)
    else:
        base = str(args.base) if args.base else str(ensure_tiny_base(progress=True))
    template, levels = ("default", REAL_MODEL_LEVELS) if args.model else ("compact", None)
    contenders: list = []
    wanted = set(args.contenders.split(",")) if args.contenders else None
    trl_note = "skipped (--skip-trl)"
    if wanted is not None and "trl" not in wanted:
        trl_note = "skipped (not in --contenders)"
    elif not args.skip_trl:
        try:
            import datasets  # noqa: F401
            import trl  # noqa: F401
        except ImportError as exc:
            trl_note = f"skipped: TRL does not import ({exc.name}); install it with pip install \"cuma-gym[bench]\""
        else:
            import tempfile

            from transformers import AutoTokenizer

            prompts = training_prompts(AutoTokenizer.from_pretrained(base), 512, template=template, levels=levels)
            contenders.append(TRL(base, prompts, Path(tempfile.mkdtemp(prefix="bench-trl-"))))
            trl_note = f"TRL {contenders[-1].version}"
    from transformers import AutoTokenizer

    prompts = training_prompts(AutoTokenizer.from_pretrained(base), 512, template=template, levels=levels)
    if args.model:
        same = (f"model.num_threads={threads}",)
        every_group = (*same, "train.skip_uniform_groups=false")
        factories = {"ours-ttrl": lambda: Ours("ours-ttrl", "smollm2-ttrl", base, every_group),
                     "ours-ttrl-torchrl-scorer": lambda: Ours("ours-ttrl-torchrl-scorer", "smollm2-ttrl", base,
                                                              (*every_group, "model.chosen_token_logprobs=false")),
                     "ours-ttrl-skip": lambda: Ours("ours-ttrl-skip", "smollm2-ttrl", base, same),
                     "ours-ttrl-fast": lambda: Ours("ours-ttrl-fast", "smollm2-ttrl", base,
                                                    (*every_group, "model.shared_prompt_forward=true",
                                                     "rollout.compact_decode=true"))}
    else:
        factories = {"ours-default": lambda: Ours("ours-default", "tiny-cuma-gated", base),
                     "ours-default-uniform": lambda: Ours("ours-default-uniform", "tiny-cuma-gated", base,
                                                          UNIFORM_LEVELS),
                     "ours-ttrl": lambda: Ours("ours-ttrl", "tiny-ttrl", base)}
    factories["minimal"] = lambda: Minimal(base, prompts)
    unknown = sorted((wanted or set()) - set(factories) - {"trl"})
    if unknown:
        parser.error(f"--contenders: unknown {', '.join(unknown)}; choose from trl, {', '.join(factories)}")
    contenders += [make() for name, make in factories.items() if wanted is None or name in wanted]
    if not args.no_freeze:
        from agents.trainer import freeze_setup

        freeze_setup()  # as `cuma train` does after its setup; for every contender (one process)
    print(f"{args.model or 'tiny base'} {base}; {PROMPTS} prompts x {GROUP} completions, <= {MAX_NEW} new tokens, "
          f"T={TEMPERATURE}, {threads} thread(s); {args.rounds} rounds x {args.steps} steps each "
          f"(round 1 = warm-up); trl: {trl_note}; "
          f"gc.freeze after setup: {'no' if args.no_freeze else 'yes'}", flush=True)
    timed: dict[str, list[float]] = {c.name: [] for c in contenders}
    rounds: dict[str, list[float]] = {c.name: [] for c in contenders}  # per timed round: the round's median
    marks: dict[str, int] = {}
    for round_ in range(args.rounds):
        for c in contenders:
            if round_ == 1 or args.rounds == 1:
                marks.setdefault(c.name, _phase_len(c))
            times = c.run(args.steps) if isinstance(c, TRL) else [c.step() for _ in range(args.steps)]
            if round_ > 0 or args.rounds == 1:
                timed[c.name].extend(times)
                rounds[c.name].append(statistics.median(times))
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
            f"{c.name} {statistics.median(timed[c.name] or [0]):.3f} s" for c in contenders), flush=True)
    for c in contenders:
        if hasattr(c, "close"):
            c.close()

    reference = median(timed.get("trl", []))
    report: dict[str, dict] = {}
    print("\n| contender | median s/step | mean s/step | TRL / this | paired, median (range) | breakdown (medians) |")
    print("|---|---|---|---|---|---|")
    for c in contenders:
        med, mean = median(timed[c.name]), statistics.fmean(timed[c.name])
        phases = {k: median(v[marks.get(c.name, 0):]) for k, v in getattr(c, "phases", {}).items()}
        detail = ", ".join(f"{k} {v * 1000:.0f} ms" if k != "trained_groups" else f"trained groups {v:g}/{PROMPTS}"
                           for k, v in phases.items() if v is not None)
        ratio = f"{reference / med:.2f}x" if reference and med else "n/a"
        paired = paired_ratios(rounds.get("trl", []), rounds[c.name])
        spread = f"{median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f})" if paired else "n/a"
        print(f"| {c.name} | {med:.4f} | {mean:.4f} | {ratio} | {spread} | {detail} |")
        report[c.name] = {"median_s": med, "mean_s": mean,
                          "ratio_vs_trl": (reference / med) if reference and med else None,
                          "paired_ratios_vs_trl": paired,
                          "phases": phases, "steps_timed": len(timed[c.name])}
        if hasattr(c, "levels"):
            report[c.name]["problems_per_level"] = {str(k): v for k, v in sorted(c.levels.items())}
    if reference is None:
        print(f"TRL: {trl_note}; ratios vs TRL need it (the minimal loop is the in-process reference):")
    for c in contenders:
        if hasattr(c, "levels"):
            total = sum(c.levels.values()) or 1
            shares = ", ".join(f"L{k} {v / total:.0%}" for k, v in sorted(c.levels.items()))
            print(f"{c.name} sampled levels: {shares}")
    minimal = median(timed.get("minimal", []))
    for c in contenders:
        if isinstance(c, Ours) and minimal is not None:
            print(f"ratio minimal / {c.name}: {minimal / median(timed[c.name]):.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"trl": trl_note, "contenders": report}, indent=2) + "\n")
    return 0


def paired_ratios(reference_rounds: list[float], rounds: list[float]) -> list[float]:
    """TRL's median over the contender's, round by round: each pair ran within seconds of each other."""
    return [r / t for r, t in zip(reference_rounds, rounds) if t > 0]


def _phase_len(contender) -> int:
    phases = getattr(contender, "phases", None)
    return len(next(iter(phases.values()))) if phases else 0


if __name__ == "__main__":
    sys.exit(main())
