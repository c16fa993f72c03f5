"""Prefill each distinct prompt once when a generation batch repeats prompts, as a GRPO group does.

A rollout batch is G copies of each prompt (16 prompts x 8 samples = 128 rows). HF `generate` prefills all
128 rows; vLLM shares them through its prefix cache (`enable_prefix_caching`, agents.policy). Here the KV
cache of every distinct prompt (all its tokens but the last) is computed once, gathered to the batch's rows,
and handed to `generate`, which then runs only the last prompt token and the new tokens over all rows
(what that saves: docs/performance.md). Sampling with `num_return_sequences=n` is expanded here, as HF
expands it, so its n copies share one prefill too (`agents.generation`: evaluation, probes, `cuma base`,
`cuma calibrate`).

The rows see the same tokens, positions and masks as in HF's own prefill, so the outputs are the same
sequences; logits agree to float rounding (a 16-row and a 128-row matmul round differently;
tests/test_shared_prefill.py). Batches without a repeated row, a caller's own cache or `inputs_embeds`,
beams, a static cache implementation, other model inputs or an encoder-decoder take HF's path unchanged.
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import torch

COMPACT_FLAG = "_cuma_compact_decode"  # set on a model while its training generator runs (agents.policy)
_CALLER_STATE = ("past_key_values", "cache", "inputs_embeds", "assistant_model", "prefill_chunk_size")


def share_prompt_prefill(model: Any) -> Any:
    """Route `model.generate` through `generate_with_shared_prefill` (on this instance only; a deepcopy, such
    as the KL reference, keeps it bound to the copy). Returns the model."""
    model.generate = types.MethodType(generate_with_shared_prefill, model)
    return model


def generate_with_shared_prefill(model: Any, inputs: Any = None, generation_config: Any = None, **kwargs: Any):
    """`model.generate(...)`, with the repeated prompts' prefill done once (see the module docstring).

    Sampling with `num_return_sequences=n` repeats every row n times first, exactly as HF's own expansion
    does (`repeat_interleave`, so the same random stream draws the same tokens), and then shares the prefill.
    """
    input_ids = kwargs.get("input_ids", inputs)
    setting = _settings(model, generation_config, kwargs)
    if not _eligible(model, input_ids, setting, kwargs):
        return type(model).generate(model, inputs, generation_config, **kwargs)
    copies = setting("num_return_sequences") or 1
    if copies > 1:
        input_ids = input_ids.repeat_interleave(copies, dim=0)
        if kwargs.get("attention_mask") is not None:
            kwargs["attention_mask"] = kwargs["attention_mask"].repeat_interleave(copies, dim=0)
        kwargs["num_return_sequences"] = 1
        if "input_ids" in kwargs:
            kwargs["input_ids"] = input_ids
        else:
            inputs = input_ids
    from agents.compact_decode import compact_generate, compactable

    compact = getattr(model, COMPACT_FLAG, False) and compactable(setting)
    cache = prompt_prefix_cache(model, input_ids, kwargs.get("attention_mask"), always=compact)
    if compact:  # rows leave the batch as they end (`rollout.compact_decode`, the training generator only)
        mask = kwargs.get("attention_mask")
        extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}
        sequences = compact_generate(model, input_ids, torch.ones_like(input_ids) if mask is None else mask, setting,
                                     cache, _cache_keyword(model), extra)
        if setting("return_dict_in_generate"):
            from transformers.generation.utils import GenerateDecoderOnlyOutput

            return GenerateDecoderOnlyOutput(sequences=sequences)
        return sequences
    if cache is not None:
        kwargs[_cache_keyword(model)] = cache
    return type(model).generate(model, inputs, generation_config, **kwargs)


def prompt_prefix_cache(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                        always: bool = False) -> Any:
    """The KV cache of every row's prompt minus its last token, one row per input row, computed once per
    distinct (ids, mask) row; None when no row repeats (nothing to share), unless `always`."""
    from transformers import DynamicCache

    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    width = input_ids.shape[1]
    distinct, index = torch.unique(torch.cat([input_ids, attention_mask.to(input_ids.dtype)], 1), dim=0,
                                   return_inverse=True)
    if distinct.shape[0] == input_ids.shape[0] and not always:
        return None
    ids, mask = distinct[:, :width - 1], distinct[:, width:2 * width - 1].to(attention_mask.dtype)
    # the positions HF's generate derives from a left-padded mask (`_prepare_position_ids_for_generation`)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # transformers < 4.56: no config argument
        cache = DynamicCache()
    extra = {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
              **{_cache_keyword(model): cache}, **extra)
    cache.batch_select_indices(index)
    return cache


def _settings(model: Any, generation_config: Any, kwargs: dict[str, Any]):
    """`setting(name)`: a generation setting as `generate` resolves it (keyword, then config, then model's)."""
    settings = generation_config if generation_config is not None else getattr(model, "generation_config", None)
    return lambda name: kwargs[name] if name in kwargs else getattr(settings, name, None)


def _eligible(model: Any, input_ids: Any, setting: Any, kwargs: dict[str, Any]) -> bool:
    """Only the plain case: a decoder-only model that HF gives a `DynamicCache`, a 2-D batch of ids (+ its
    mask) and no other model input, no static cache, no beams, and `num_return_sequences > 1` only when
    sampling (HF rejects it otherwise)."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    dynamic = getattr(model, "_supports_default_dynamic_cache", None)  # False for models with their own cache
    if dynamic is not None and not dynamic():
        return False
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.shape[1] < 2:
        return False
    mask = kwargs.get("attention_mask")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != input_ids.shape):
        return False
    if any(kwargs.get(key) is not None for key in _CALLER_STATE):
        return False
    if any(isinstance(v, torch.Tensor) for k, v in kwargs.items() if k not in ("input_ids", "attention_mask")):
        return False  # e.g. token_type_ids or pixel values: HF knows how to expand and slice them, we do not
    copies = setting("num_return_sequences") or 1
    return setting("cache_implementation") is None and (setting("num_beams") or 1) == 1 \
        and setting("use_cache") is not False and (copies == 1 or bool(setting("do_sample")))


def _forward_parameters(model: Any) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _cache_keyword(model: Any) -> str:
    """`cache` where the model takes it (transformers >= 5.x deprecates `past_key_values`), else the old name."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"
