"""Text generation outside the training rollout: one helper for held-out evaluation, curriculum probes,
`cuma base` (the tiny base's profile), `cuma calibrate` and `cuma demo`.

    texts = generate_texts(model, tokenizer, prompts, samples=8, temperature=0.6, max_new_tokens=48)
    with seeded(0, device):                     # fixed numbers, the caller's random stream left alone
        texts = generate_texts(...)

Prompts are encoded left-padded, `batch_size // samples` prompts per HF `generate` call, and the samples of
a prompt share its prefill (`agents.shared_prefill`, expanded exactly as HF's `num_return_sequences` would,
so the same random stream draws the same tokens). Random draws come from torch's global stream; `seeded`
forks and seeds it. The training rollout samples through TorchRL's wrapper instead, whose `model.generate`
is routed through the same shared prefill by `share_prompt_prefill` (re-exported here); the vLLM backend
generates through `generate_texts_vllm`, whose prefix cache shares the prompts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from agents.shared_prefill import generate_with_shared_prefill, share_prompt_prefill

__all__ = ["autocast", "generate_new_tokens", "generate_texts", "generate_texts_vllm", "hf_generate_kwargs",
           "model_device", "seeded", "share_prompt_prefill"]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """`torch.autocast` to `dtype` on `device`'s type; nothing in float32 (weights are float32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block on a forked global RNG (CPU, and `device` when it is a GPU) seeded with `seed`, so the
    same weights give the same texts and the caller's random stream is as the block found it."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


def hf_generate_kwargs(tokenizer: Any, *, samples: int, temperature: float | None, max_new_tokens: int,
                       top_p: float = 1.0) -> dict[str, Any]:
    """HF `generate` keywords: greedy when `temperature` is None (one completion), else `samples` draws at it."""
    if temperature is None and samples != 1:
        raise ValueError("greedy decoding gives one completion per prompt; pass a temperature to sample")
    kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id)
    if temperature is None:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    else:
        kwargs.update(do_sample=True, temperature=float(temperature), top_k=None, top_p=float(top_p),
                      num_return_sequences=samples)
    return kwargs


@torch.no_grad()
def generate_texts(model: Any, tokenizer: Any, prompts: Sequence[str], *, samples: int = 1,
                   temperature: float | None = None, max_new_tokens: int = 16, top_p: float = 1.0,
                   batch_size: int = 512, dtype: torch.dtype = torch.float32, add_special_tokens: bool = True,
                   seed: int | None = None) -> list[list[str]]:
    """`samples` completions per prompt (prompts as given: render a chat template first where one applies).

    `temperature=None` is greedy (one completion per prompt). `dtype` other than float32 runs under autocast.
    `add_special_tokens=True` encodes as TorchRL's training wrapper does (the tokenizer's BOS, if it has one);
    the tiny base has none, so either value gives it the same ids. `seed` runs the call under `seeded(seed)`;
    None draws from the caller's stream (a probe's samples come from the training run's stream).
    """
    out: list[list[str]] = []
    for count, new_tokens in generate_new_tokens(model, tokenizer, prompts, samples=samples, temperature=temperature,
                                                 max_new_tokens=max_new_tokens, top_p=top_p, batch_size=batch_size,
                                                 dtype=dtype, add_special_tokens=add_special_tokens, seed=seed):
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        out.extend(texts[i * samples:(i + 1) * samples] for i in range(count))
    return out


@torch.no_grad()
def generate_new_tokens(model: Any, tokenizer: Any, prompts: Sequence[str], *, samples: int = 1,
                        temperature: float | None = None, max_new_tokens: int = 16, top_p: float = 1.0,
                        batch_size: int = 512, dtype: torch.dtype = torch.float32, add_special_tokens: bool = True,
                        seed: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """`generate_texts`' batches before decoding: (prompts in the batch, their `samples` rows of new token ids
    each, padded after eos), `batch_size // samples` prompts at a time."""
    device = model_device(model)
    kwargs = hf_generate_kwargs(tokenizer, samples=samples, temperature=temperature, max_new_tokens=max_new_tokens,
                                top_p=top_p)
    per_call = max(1, batch_size // samples)
    with seeded(seed, device) if seed is not None else contextlib.nullcontext():
        for start in range(0, len(prompts), per_call):
            chunk = list(prompts[start:start + per_call])
            enc = tokenizer(chunk, padding=True, padding_side="left", return_tensors="pt",
                            add_special_tokens=add_special_tokens).to(device)
            with autocast(device, dtype):
                seqs = generate_with_shared_prefill(model, **enc, **kwargs)
            yield len(chunk), seqs[:, enc["input_ids"].shape[1]:]


def generate_texts_vllm(llm: Any, prompts: Sequence[str], *, samples: int = 1, temperature: float | None = None,
                        max_new_tokens: int = 16, top_p: float = 1.0) -> list[list[str]]:
    """`generate_texts` on a vLLM engine (`vllm.LLM`): its prefix cache shares the prompts, its seed the draws."""
    from vllm import SamplingParams

    if temperature is None and samples != 1:
        raise ValueError("greedy decoding gives one completion per prompt; pass a temperature to sample")
    params = SamplingParams(n=samples, temperature=0.0 if temperature is None else temperature,
                            top_p=1.0 if temperature is None else top_p, max_tokens=max_new_tokens)
    outputs = llm.generate(list(prompts), params, use_tqdm=False)
    return [[c.text for c in o.outputs] for o in outputs]
