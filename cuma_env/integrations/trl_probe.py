"""A curriculum probe hook that samples with the model TRL is training.

    probe = generation_probe(model, tokenizer, template=feed.template, group_size=8, min_votes=0.75,
                             temperature=0.6, max_new_tokens=48)
    stream = CurriculumStream("agreement_gated", source, probe=probe)

A schedule such as `AgreementGated` asks for a probe (a group per problem of another level, sampled without
training) before it promotes; `curricula.CurriculumStream` calls `probe(level, problems)` inside `observe`, so
inside TRL's reward call. The hook samples from the model's current weights (the same object TRL trains) under
a forked RNG seeded by `seed` and its call count: probing never shifts TRL's sampling, and every process of a
multi-process run draws the same probe groups, so their curricula stay identical.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from cuma_env.episode import EpisodeConfig, probe_hook
from cuma_env.voting import DEFAULT_MIN_VOTES


def generation_probe(model: Any, tokenizer: Any, *, template: str = "default", chat: bool = True,
                     group_size: int = 8, min_votes: int | float = DEFAULT_MIN_VOTES, empty_votes: bool = False,
                     temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 256, seed: int = 0,
                     batch_size: int = 64):
    """`probe(level, problems) -> list[info]` (`cuma_env.episode.probe_hook`): `group_size` samples per problem
    from `model`, each call under its own seed."""
    config = EpisodeConfig(group_size=group_size, min_votes=min_votes, empty_votes=empty_votes)
    calls = itertools.count()

    def sample(texts: list[str]) -> list[list[str]]:
        if chat:
            texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                                   add_generation_prompt=True) for t in texts]
        return sample_groups(model, tokenizer, texts, group_size, seed=seed + next(calls), temperature=temperature,
                             top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size)

    return probe_hook(sample, template, config)


def sample_groups(model: Any, tokenizer: Any, prompts: Sequence[str], n: int, *, seed: int, temperature: float,
                  top_p: float, max_new_tokens: int, batch_size: int = 64) -> list[list[str]]:
    """`n` sampled completions per rendered prompt, in eval mode and without gradients, under a forked RNG."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    groups: list[list[str]] = []
    per_call = max(1, batch_size // n)
    devices = [device] if device.type == "cuda" else []
    try:
        model.eval()
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            for start in range(0, len(prompts), per_call):
                chunk = list(prompts[start:start + per_call])
                enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left",
                                add_special_tokens=False).to(device)
                out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                     num_return_sequences=n, max_new_tokens=max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id)
                texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                groups.extend(texts[i * n:(i + 1) * n] for i in range(len(chunk)))
    finally:
        model.train(was_training)
    return groups
