"""Token statistics computed from a policy's logits, for rewards that need them (Intuitor's self-certainty).

The environment never sees logits, so the caller computes one value per response and hands it in: to the
Gymnasium face as `Completions(texts, token_stats=...)`, to the TorchRL face under the `token_stats`
input key (shape (B,)), to `GroupVote` under the same key in the buffered data.

    stats = response_self_certainty(model, policy_out, pad_token_id=tokenizer.pad_token_id)   # (B,)
    policy_out.set("token_stats", stats); env.step(policy_out)

Self-certainty (Zhao et al., Intuitor) of a response is the mean over its tokens of
logsumexp(logits) - mean(logits) = KL(U || p) - log V: 0 for a uniform next-token distribution, larger
when the model is more certain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def self_certainty_from_logits(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over masked positions of logsumexp(logits) - mean(logits).

    Args:
        logits: (..., T, V) next-token logits at the response positions.
        mask: (..., T) bool/0-1, True at the positions that belong to the response (default: all).

    Returns:
        (...,) float tensor; a row with no masked position gets 0 (the uniform, least certain, value).
    """
    if logits.ndim < 2:
        raise ValueError(f"logits must be (..., T, V), got shape {tuple(logits.shape)}")
    logits = logits.float()
    per_token = torch.logsumexp(logits, dim=-1) - logits.mean(dim=-1)
    if mask is None:
        return per_token.mean(dim=-1)
    if mask.shape != per_token.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} must equal logits.shape[:-1] {tuple(per_token.shape)}")
    weights = mask.to(per_token.dtype)
    return (per_token * weights).sum(-1) / weights.sum(-1).clamp_min(1.0)


def _as_token_list(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        if value.is_nested:
            return [t.reshape(-1) for t in value.unbind(0)]
        return [t.reshape(-1) for t in value.unbind(0)] if value.ndim > 1 else [value]
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()
    return [torch.as_tensor(t).reshape(-1) for t in value]


def _strip(tokens: torch.Tensor, pad: int | None, leading: bool) -> torch.Tensor:
    if pad is None or tokens.numel() == 0:
        return tokens
    keep = (tokens != pad).nonzero()
    if keep.numel() == 0:
        return tokens[:0]
    return tokens[int(keep[0]):] if leading else tokens[: int(keep[-1]) + 1]


@torch.no_grad()
def response_self_certainty(model: torch.nn.Module, td_or_prompts: Any, responses: Sequence[Any] | None = None,
                            *, pad_token_id: int | None = None) -> torch.Tensor:
    """Self-certainty of each response under `model` (a transformers causal LM), shape (B,).

    Either a policy output tensordict with `("tokens", "prompt")` and `("tokens", "response")` (what
    `TransformersWrapper`/`vLLMWrapper` write), or two sequences of 1-D token tensors. With `pad_token_id`,
    left padding of prompts and right padding of responses is stripped first (if pad == eos, a response's
    final eos is stripped too).
    """
    if responses is None:
        # as_list: responses (and prompts) are ragged lazy stacks when their lengths differ
        prompts = _as_token_list(td_or_prompts.get(("tokens", "prompt"), as_list=True))
        responses = _as_token_list(td_or_prompts.get(("tokens", "response"), as_list=True))
    else:
        prompts, responses = _as_token_list(td_or_prompts), _as_token_list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    prompts = [_strip(p, pad_token_id, leading=True) for p in prompts]
    responses = [_strip(r, pad_token_id, leading=False) for r in responses]
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (the first response token is predicted from it)")
    device = next(model.parameters()).device
    lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
    width = max(lengths)
    ids = torch.full((len(prompts), width), 0 if pad_token_id is None else pad_token_id, dtype=torch.long)
    attention = torch.zeros(len(prompts), width, dtype=torch.long)
    response_mask = torch.zeros(len(prompts), width, dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, : lengths[i]] = torch.cat([p, r]).long()
        attention[i, : lengths[i]] = 1
        if len(r):
            # the logits at position t predict token t + 1: the response's tokens are predicted from
            # positions len(p) - 1 .. len(p) + len(r) - 2
            response_mask[i, len(p) - 1: len(p) + len(r) - 1] = True
    logits = _logits_in_float32(model, ids.to(device), attention.to(device))
    return self_certainty_from_logits(logits, response_mask.to(device)).cpu()


def _logits_in_float32(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
                       ) -> torch.Tensor:
    """The model's logits, with the output projection in float32 even under a bf16 autocast.

    Self-certainty compares responses of one group by small differences of logsumexp - mean over the whole
    vocabulary; bf16 logits of size 10-30 are rounded by 0.06-0.125, enough to reorder a group. Under
    autocast the decoder still runs in bf16 (the cost), only the last projection is float32. Models without
    `get_decoder()` and a linear output layer take the plain forward.
    """
    device_type = input_ids.device.type
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not torch.is_autocast_enabled(device_type) or decoder is None or not isinstance(head, torch.nn.Linear):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    with torch.autocast(device_type, enabled=False):
        bias = None if head.bias is None else head.bias.float()
        return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)
