"""`rollout.compact_decode` (agents/compact_decode.py) on the real tiny base: finished rows leave the batch, greedy
decoding gives HF's tokens, sampling draws HF's tokens until the first row ends (the same warpers, softmax and
draw), the output has `generate`'s layout, and only the training generator decodes this way."""

from __future__ import annotations

import pytest
import torch

import agents.compact_decode as compact_decode
from agents.config import load_config
from agents.evaluation import _prompts, bench_problems, evaluate
from agents.policy import build_policy
from agents.rollout import Rollout
from agents.shared_prefill import COMPACT_FLAG


@pytest.fixture(scope="module")
def policy(tiny_base_dir):
    config = load_config(preset="tiny-cuma-gated", overrides=[f"model.path={tiny_base_dir}"])
    return build_policy(config.model, config.rollout, seed=0)


@pytest.fixture(scope="module")
def batch(policy):
    """8 copies each of 12 validation prompts of levels 1, 3 and 5 (their completions end at different steps)."""
    problems, template = bench_problems("arith", 4, levels=[1, 3, 5], split="validation")
    prompts = [p for level in problems for p in _prompts(policy, problems[level], template)]
    enc = policy.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc.input_ids.repeat_interleave(8, 0), enc.attention_mask.repeat_interleave(8, 0)


def _generate(policy, batch, *, compact: bool, sample: bool) -> torch.Tensor:
    ids, mask = batch
    setattr(policy.model, COMPACT_FLAG, compact)
    try:
        torch.manual_seed(0)
        out = policy.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=48, do_sample=sample,
                                    temperature=0.6 if sample else None, top_p=1.0, top_k=None)
    finally:
        setattr(policy.model, COMPACT_FLAG, False)
    return out if torch.is_tensor(out) else out.sequences


def _ends(sequences: torch.Tensor, width: int, eos: int) -> list[int]:
    """Per row, the new tokens up to and including its first end-of-sequence (all of them if none)."""
    new = sequences[:, width:]
    return [int((row == eos).nonzero()[0]) + 1 if (row == eos).any() else new.shape[1] for row in new]


def test_greedy_decoding_gives_hfs_tokens(policy, batch):
    hf = _generate(policy, batch, compact=False, sample=False)
    ours = _generate(policy, batch, compact=True, sample=False)
    assert torch.equal(ours, hf)
    assert len(set(_ends(hf, batch[0].shape[1], policy.tokenizer.eos_token_id))) > 1  # rows did end apart


def test_sampling_draws_hfs_tokens_until_the_first_row_ends_and_keeps_generates_layout(policy, batch):
    width, eos, pad = batch[0].shape[1], policy.tokenizer.eos_token_id, policy.tokenizer.pad_token_id
    hf = _generate(policy, batch, compact=False, sample=True)
    ours = _generate(policy, batch, compact=True, sample=True)
    first_end = min(_ends(hf, width, eos))
    assert first_end < 48 and torch.equal(ours[:, :width + first_end], hf[:, :width + first_end])
    ends = _ends(ours, width, eos)
    assert ours.shape[1] == width + max(ends)  # as long as its longest row, as generate's output is
    for row, end in zip(ours[:, width:], ends):
        assert (row[end:] == pad).all()  # a finished row is padded, never written again
    assert torch.equal(ours[:, :width], batch[0])


def test_only_plain_sampling_or_greedy_decoding_is_compacted():
    settings = {"max_new_tokens": 8, "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    assert compact_decode.compactable(settings.get)
    assert not compact_decode.compactable({**settings, "repetition_penalty": 1.2}.get)
    assert not compact_decode.compactable({**settings, "num_beams": 2}.get)
    assert not compact_decode.compactable({**settings, "max_new_tokens": None}.get)


def test_only_the_training_generator_decodes_compactly(tiny_base_dir, monkeypatch):
    calls = []
    real = compact_decode.compact_generate
    monkeypatch.setattr(compact_decode, "compact_generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    overrides = [f"model.path={tiny_base_dir}", "rollout.compact_decode=true", "rollout.prompts_per_step=4"]
    config = load_config(preset="tiny-cuma-gated", overrides=overrides)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    rollout.collect()
    assert calls  # the training collection decoded compactly
    assert getattr(policy.model, COMPACT_FLAG) is False
    done = len(calls)
    problems, template = bench_problems("arith", 3, levels=[1])
    evaluate(policy, problems, template, samples=2, max_new_tokens=8)
    assert len(calls) == done  # evaluation (greedy and sampled) takes HF's path


def test_the_vllm_backend_refuses_it():
    from agents.config import ConfigError

    with pytest.raises(ConfigError, match="rollout.compact_decode is for the transformers backend"):
        load_config(preset="tiny-cuma-gated", overrides=["rollout.compact_decode=true", "model.backend=vllm",
                                                         "model.device=cuda"])
