"""Decoding that drops finished rows from the batch (`rollout.compact_decode: true`): an opt-in for training
collection on CPU.

HF's `generate` keeps every row of a batch in every decoding step until the last row ends: a GRPO batch of 128
completions whose lengths spread from 4 to 42 tokens pays for 128 rows x 42 steps. Here a row that emits its
end-of-sequence token leaves the batch (its KV cache rows with it), so a step costs the rows still writing;
the output is what `generate` returns (prompt + new tokens, finished rows padded with the pad token).

What it does not keep: bit-identity with HF's path. The sampling distribution is the same (the same
temperature, top-k and top-p warpers of transformers, in HF's order, on float32 logits), but each step draws
only the live rows' tokens (a different random stream) and the smaller matmuls round differently, so a run
with it is another sample of the same process, not the same run; it is off by default and a study that uses
it declares it. Only plain sampling or greedy decoding qualifies (`compactable`); anything else, and every
evaluation, takes HF's path.
"""

from __future__ import annotations

from typing import Any

import torch

# generation settings that add logits processors or stopping rules this loop does not apply: any of them set
# to other than its neutral value sends the call to HF's own `generate`
_NEUTRAL = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,),
            "min_length": (None, 0), "min_new_tokens": (None, 0), "forced_bos_token_id": (None,),
            "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
            "sequence_bias": (None,), "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0),
            "eta_cutoff": (None, 0.0), "min_p": (None,), "renormalize_logits": (None, False),
            "guidance_scale": (None, 1.0), "watermarking_config": (None,), "stop_strings": (None,),
            "output_scores": (None, False), "output_logits": (None, False), "output_attentions": (None, False),
            "output_hidden_states": (None, False), "num_beams": (None, 1), "num_return_sequences": (None, 1),
            "encoder_repetition_penalty": (None, 1.0), "exponential_decay_length_penalty": (None,),
            "max_time": (None,), "assistant_model": (None,), "prompt_lookup_num_tokens": (None,)}


def compactable(setting: Any) -> bool:
    """Whether a `generate` call with these settings (`setting(name)`, as `generate` resolves it) is plain
    sampling or greedy decoding with a token budget, which `compact_generate` reproduces in distribution."""
    if setting("max_new_tokens") is None:
        return False
    return all(setting(name) in neutral for name, neutral in _NEUTRAL.items())


def _warpers(setting: Any) -> list[Any]:
    """HF's sampling warpers for these settings, in the order `generate` applies them."""
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = []
    temperature, top_k, top_p = setting("temperature"), setting("top_k"), setting("top_p")
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k is not None and top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return warpers


def _token_ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


@torch.no_grad()
def compact_generate(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, setting: Any,
                     cache: Any, cache_keyword: str, extra: dict[str, Any] | None = None) -> torch.Tensor:
    """`generate`'s sequences for a left-padded batch whose prompts (all but their last token) are already in
    `cache` (a DynamicCache, one row per input row, passed to the model as `cache_keyword`), dropping each row
    from the batch once it ends. `extra`: more forward arguments (`logits_to_keep` where the model takes it)."""
    rows = input_ids.shape[0]
    budget = int(setting("max_new_tokens"))
    eos = torch.tensor(_token_ids(setting("eos_token_id")), dtype=torch.long, device=input_ids.device)
    pad = setting("pad_token_id")
    pad = int(pad) if pad is not None else (int(eos[0]) if len(eos) else 0)
    do_sample = bool(setting("do_sample"))
    warpers = _warpers(setting) if do_sample else []
    extra = extra or {}
    new = torch.full((rows, budget), pad, dtype=torch.long, device=input_ids.device)
    live = torch.arange(rows, device=input_ids.device)      # the input rows still writing, in batch order
    mask = attention_mask.to(torch.long)
    current = input_ids[:, -1:]                               # the token each live row feeds next
    steps = 0
    while steps < budget and len(live):
        positions = (mask.sum(-1, keepdim=True) - 1).clamp_min(0)
        logits = model(input_ids=current, attention_mask=mask, position_ids=positions, use_cache=True,
                       **{cache_keyword: cache}, **extra).logits[:, -1].to(copy=True, dtype=torch.float32)
        if do_sample:
            for warp in warpers:
                logits = warp(current, logits)  # HF's warpers take the ids but read only the scores
            tokens = torch.multinomial(torch.softmax(logits, dim=-1), num_samples=1).squeeze(1)
        else:
            tokens = torch.argmax(logits, dim=-1)
        new[live, steps] = tokens
        steps += 1
        keep = ~torch.isin(tokens, eos) if len(eos) else torch.ones_like(tokens, dtype=torch.bool)
        if not bool(keep.all()):
            index = keep.nonzero().squeeze(1)
            cache.batch_select_indices(index)
            live, tokens, mask = live[index], tokens[index], mask[index]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], 1)
        current = tokens[:, None]
    return torch.cat([input_ids, new[:, :steps]], 1)
