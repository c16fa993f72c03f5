"""`agents.generation.generate_texts`, the one generation helper of evaluation, probes, `cuma base`, `cuma calibrate`:
its samples are the ones HF's own `generate` draws from the same seed, and its seeding leaves the caller alone."""

from __future__ import annotations

import pytest
import torch

from agents.generation import generate_texts, seeded
from agents.policy import load_model, render_prompts
from agents.tiny.corpus import MAX_COMPLETION_TOKENS
from agents.tiny.profile import generate_completions
from cuma_env.arithmetic import ArithmeticSource
from cuma_env.prompting import format_prompt

SAMPLES = 4


@pytest.fixture(scope="module", params=["tiny_base_dir", "hub_like_model_dir"])
def model_and_prompts(request):
    model, tokenizer = load_model(str(request.getfixturevalue(request.param)), torch.device("cpu"))
    source = ArithmeticSource(split="test")
    prompts = render_prompts(tokenizer, [format_prompt(source.get(lv, i), "compact") for lv in (1, 4) for i in (0, 3)])
    return model, tokenizer, prompts


def hf_reference(model, tokenizer, prompts, seed, **sampling):
    """What the earlier per-caller loops did: one HF `generate` (its own prefill and `num_return_sequences`
    expansion) from `torch.manual_seed(seed)`, texts grouped per prompt."""
    enc = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        seqs = type(model).generate(model, **enc, max_new_tokens=10, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=tokenizer.eos_token_id, **sampling)
    texts = tokenizer.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    n = sampling.get("num_return_sequences", 1)
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def test_seeded_samples_are_hfs_own_and_leave_the_callers_stream(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts
    torch.manual_seed(123)
    state = torch.get_rng_state()
    texts = generate_texts(model, tokenizer, prompts, samples=SAMPLES, temperature=0.7, top_p=0.9,
                           max_new_tokens=10, add_special_tokens=False, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert texts == hf_reference(model, tokenizer, prompts, 5, do_sample=True, temperature=0.7, top_p=0.9,
                                 top_k=None, num_return_sequences=SAMPLES)
    assert len({t for group in texts for t in group}) > 1  # sampled, not one repeated string


def test_unseeded_samples_draw_from_the_callers_stream(model_and_prompts):
    """A probe samples from the training run's stream: the same draws as `seeded`, and the stream moves on."""
    model, tokenizer, prompts = model_and_prompts
    with seeded(9):
        texts = generate_texts(model, tokenizer, prompts, samples=SAMPLES, temperature=0.7, max_new_tokens=10,
                               add_special_tokens=False)
    assert texts == generate_texts(model, tokenizer, prompts, samples=SAMPLES, temperature=0.7, max_new_tokens=10,
                                   add_special_tokens=False, seed=9)
    with seeded(9):
        before = torch.get_rng_state()
        generate_texts(model, tokenizer, prompts[:1], samples=2, temperature=0.7, max_new_tokens=4)
        assert not torch.equal(torch.get_rng_state(), before)  # the caller's stream moved on


def test_greedy_is_hfs_and_does_not_depend_on_the_batch(model_and_prompts):
    model, tokenizer, prompts = model_and_prompts
    expected = hf_reference(model, tokenizer, prompts, 0, do_sample=False)
    for batch_size in (1, 3, 512):
        assert generate_texts(model, tokenizer, prompts, max_new_tokens=10, batch_size=batch_size,
                              add_special_tokens=False) == expected
    with pytest.raises(ValueError, match="greedy decoding gives one completion"):
        generate_texts(model, tokenizer, prompts, samples=2)


def test_the_tiny_bases_settings(tiny_base_dir):
    """`generate_completions` (`cuma base`, `cuma demo`) is `generate_texts` with the tiny base's settings."""
    model, tokenizer = load_model(str(tiny_base_dir), torch.device("cpu"))
    prompts = [format_prompt(ArithmeticSource("test").get(2, i), "compact") for i in range(3)]
    assert generate_completions(model, tokenizer, prompts, samples=3, temperature=0.6, seed=1) == generate_texts(
        model, tokenizer, prompts, samples=3, temperature=0.6, max_new_tokens=MAX_COMPLETION_TOKENS, seed=1)
