"""Supervised warm-up of the tiny model into a *weak base* on the procedural arithmetic train split.

The model reads the environment's own compact prompt, `format_prompt(problem, "compact")`, e.g.
`What is 74 + 37? Answer in \\boxed{}.`, and learns to continue it with its completion + `<eos>` (loss on the
completion tokens only): `\\boxed{111}`, worked steps before it, or no answer (`agents.tiny.corpus`). Only
`ArithmeticSource(split="train")` is read; levels are drawn uniformly. Deterministic per config: seeded
initialisation, seeded problem stream, a separately seeded choice of completions, a fixed thread count.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from agents.tiny.config import TinyBaseConfig
from agents.tiny.corpus import completion_for
from agents.tiny.model import build_tiny_model
from cuma_env.arithmetic import ArithmeticSource
from cuma_env.problems import Problem
from cuma_env.prompting import format_prompt

IGNORE_INDEX = -100


@dataclass
class TrainResult:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    config: TinyBaseConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def encode_examples(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], completions: Sequence[str]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `input_ids` = prompt + completion + <eos>, and `labels` (-100 on prompt and padding).

    No attention mask is needed with right padding: under causal attention no real token sees a pad.
    """
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    rows = [p + c + [eos] for p, c in zip(prompt_ids, completion_ids)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (row, p) in enumerate(zip(rows, prompt_ids)):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, len(p): len(row)] = torch.tensor(row[len(p):])
    return input_ids, labels


def sample_train_problems(source: ArithmeticSource, levels: Sequence[int], rng: np.random.Generator,
                          n: int) -> list[Problem]:
    """`n` problems of the train split, levels uniform over `levels`, indices uniform within a level."""
    drawn = rng.integers(0, len(levels), size=n)
    out = []
    for li in drawn:
        level = levels[int(li)]
        out.append(source.get(level, int(rng.integers(0, source.size(level)))))
    return out


def lr_factor(step: int, config: TinyBaseConfig) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def train_tiny_base(config: TinyBaseConfig | None = None, *, progress: bool = True,
                    callback: Callable[[int, torch.nn.Module, list[float]], None] | None = None) -> TrainResult:
    """Build the tiny model and warm it up; returns the trained model (eval mode) and its tokenizer.

    `callback(steps_done, model, losses)` runs every 50 steps and at the end (e.g. to evaluate a
    trajectory); it must leave the model's weights and mode as it found them.
    """
    config = config or TinyBaseConfig()
    start = time.perf_counter()
    with torch_threads(config.num_threads):
        model, tokenizer = build_tiny_model(config)
        model.train()
        source = ArithmeticSource(split="train", seed=config.seed)
        rng = np.random.default_rng([config.seed, 0x7A11])
        choice_rng = np.random.default_rng([config.seed, 99])  # which kind of completion each problem gets
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
        losses: list[float] = []
        bar = _progress_bar(config.steps, progress)
        try:
            for step in range(config.steps):
                problems = sample_train_problems(source, config.levels, rng, config.batch_size)
                prompts = [format_prompt(p, config.template) for p in problems]
                completions = [completion_for(p, choice_rng, config.reasoning_share, config.unanswered_share)
                               for p in problems]
                input_ids, labels = encode_examples(tokenizer, prompts, completions)
                loss = model(input_ids=input_ids, labels=labels).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                if callback is not None and ((step + 1) % 50 == 0 or step + 1 == config.steps):
                    callback(step + 1, model, losses)
                    model.train()
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0 or step == config.steps - 1:
                        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        finally:
            if bar is not None:
                bar.close()
        model.eval()
    return TrainResult(model=model, tokenizer=tokenizer, config=config, losses=losses,
                       seconds=time.perf_counter() - start)


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cuma tiny base warm-up", unit="step", leave=False)
