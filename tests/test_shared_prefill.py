"""Prefilling each repeated prompt once (agents.shared_prefill) changes no generated token, on the real tiny base
and on a hub-shaped model (byte-level BPE, ChatML, grouped-query attention: tests/hub_like.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from agents import shared_prefill
from agents.config import load_config
from agents.policy import build_policy, load_model, render_prompts
from cuma_env.arithmetic import ArithmeticSource
from cuma_env.prompting import format_prompt

GROUP = 4


MODELS = ["tiny_base_dir", "hub_like_model_dir"]


@pytest.fixture(scope="module", params=MODELS)
def model_and_batch(request):
    """A model, and a left-padded batch of 6 prompts of several lengths, each repeated GROUP times."""
    model, tokenizer = load_model(str(request.getfixturevalue(request.param)), torch.device("cpu"))
    source = ArithmeticSource(split="train")
    problems = [source.get(level, index) for level in (1, 3, 5) for index in (0, 7)]
    prompts = render_prompts(tokenizer, [format_prompt(p, "compact") for p in problems])
    rows = [p for p in prompts for _ in range(GROUP)]
    encoded = tokenizer(rows, padding=True, padding_side="left", return_tensors="pt")
    assert (encoded["attention_mask"] == 0).any(), "the batch must contain left padding"
    return model, tokenizer, dict(encoded)


def generate_both(model, batch, **kwargs):
    """(HF's own generate, the shared-prefill generate) from the same seed."""
    out = []
    with torch.random.fork_rng():  # later tests see the global RNG as this one found it
        for generate in (type(model).generate, shared_prefill.generate_with_shared_prefill):
            torch.manual_seed(0)
            out.append(generate(model, **batch, return_dict_in_generate=True, output_logits=True, **kwargs))
    return out


def spy_on_cache(monkeypatch) -> list[bool]:
    """Records, per call of `prompt_prefix_cache`, whether it built a cache (the real function runs)."""
    built: list[bool] = []
    real = shared_prefill.prompt_prefix_cache

    def recording(*args, **kwargs):
        cache = real(*args, **kwargs)
        built.append(cache is not None)
        return cache

    monkeypatch.setattr(shared_prefill, "prompt_prefix_cache", recording)
    return built


@pytest.mark.parametrize("sampling", [dict(do_sample=False), dict(do_sample=True, temperature=0.6, top_k=None)])
def test_repeated_prompts_generate_the_same_tokens(model_and_batch, sampling):
    model, tokenizer, batch = model_and_batch
    plain, shared = generate_both(model, batch, max_new_tokens=8, pad_token_id=tokenizer.pad_token_id, **sampling)
    assert torch.equal(plain.sequences, shared.sequences)
    assert len(plain.logits) == len(shared.logits)
    for a, b in zip(plain.logits, shared.logits):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_the_cache_holds_each_prompt_but_its_last_token(model_and_batch):
    model, _, batch = model_and_batch
    ids, mask = batch["input_ids"], batch["attention_mask"]
    cache = shared_prefill.prompt_prefix_cache(model, ids, mask)
    assert cache.get_seq_length() == ids.shape[1] - 1
    keys = cache.layers[0].keys
    assert keys.shape[0] == ids.shape[0]
    assert torch.equal(keys[0], keys[GROUP - 1]) and not torch.equal(keys[0], keys[GROUP])
    # HF's own prefill of the same rows gives the same keys, up to matmul rounding
    reference = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], use_cache=True,
                      position_ids=(mask[:, :-1].cumsum(-1) - 1).clamp_min(0)).past_key_values
    real = mask[:, :-1].bool()  # padded positions hold whatever the pad token computes
    torch.testing.assert_close(keys.transpose(1, 2)[real], reference.layers[0].keys.transpose(1, 2)[real],
                               atol=1e-5, rtol=1e-5)
    distinct = ids[::GROUP], mask[::GROUP]
    assert shared_prefill.prompt_prefix_cache(model, *distinct) is None  # nothing repeats: nothing to share


def test_callers_own_settings_take_hfs_path(model_and_batch, monkeypatch):
    model, tokenizer, batch = model_and_batch
    built = spy_on_cache(monkeypatch)
    common = dict(max_new_tokens=4, pad_token_id=tokenizer.pad_token_id)
    shared_prefill.generate_with_shared_prefill(model, **batch, **common)
    assert built == [True]
    distinct = {key: value[::GROUP] for key, value in batch.items()}
    for kwargs in (dict(num_beams=2), dict(use_cache=False), dict(do_sample=False)):
        plain, shared = generate_both(model, distinct, **common, **kwargs)
        assert torch.equal(plain.sequences, shared.sequences)
    assert built == [True, False]  # beams and no cache: not asked; distinct rows: nothing to share


def test_sampled_copies_share_one_prefill_and_the_random_stream(model_and_batch, monkeypatch):
    """`num_return_sequences=n` is expanded as HF expands it, so the same seed draws the same tokens."""
    model, tokenizer, batch = model_and_batch
    built = spy_on_cache(monkeypatch)
    distinct = {key: value[::GROUP] for key, value in batch.items()}
    plain, shared = generate_both(model, distinct, do_sample=True, temperature=0.6, top_k=None, max_new_tokens=8,
                                  num_return_sequences=GROUP, pad_token_id=tokenizer.pad_token_id)
    assert built == [True]
    assert shared.sequences.shape[0] == GROUP * distinct["input_ids"].shape[0]
    assert torch.equal(plain.sequences, shared.sequences)
    for kwargs in (dict(num_return_sequences=2), dict(num_return_sequences=2, do_sample=False)):
        with pytest.raises(ValueError):  # greedy cannot return several sequences: HF's own error stays
            shared_prefill.generate_with_shared_prefill(model, **distinct, max_new_tokens=2, **kwargs)


def test_a_deep_copy_generates_with_its_own_weights(model_and_batch):
    model, tokenizer, batch = model_and_batch
    original = copy.deepcopy(model)
    shared_prefill.share_prompt_prefill(original)
    clone = copy.deepcopy(original)  # as Policy.make_reference copies the trained model
    assert clone.generate.__self__ is clone
    noise = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=noise))
    kwargs = dict(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(clone.generate(**kwargs), type(clone).generate(clone, **kwargs))
    assert not torch.equal(clone.generate(**kwargs), original.generate(**kwargs))


@pytest.mark.parametrize("model_dir", MODELS)
def test_policy_samples_match_hfs_num_return_sequences(model_dir, request):
    """`generate_texts` repeats the rows itself (so they can share a prefill); the RNG stream stays HF's."""
    config = load_config(preset="tiny-ttrl", overrides=[f"model.path={request.getfixturevalue(model_dir)}"])
    policy = build_policy(config.model, config.rollout, seed=0)
    model, tokenizer = policy.model, policy.tokenizer
    assert model.generate.__func__ is shared_prefill.generate_with_shared_prefill
    source = ArithmeticSource(split="test")
    prompts = render_prompts(tokenizer, [format_prompt(source.get(2, i), "compact") for i in range(5)])
    encoded = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        texts = policy.generate_texts(prompts, samples=GROUP, temperature=0.6, max_new_tokens=8)
        torch.manual_seed(3)
        seqs = type(model).generate(model, **encoded, do_sample=True, temperature=0.6, top_k=None, top_p=1.0,
                                    num_return_sequences=GROUP, max_new_tokens=8,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    expected = tokenizer.batch_decode(seqs[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    assert texts == [expected[i * GROUP:(i + 1) * GROUP] for i in range(len(prompts))]
