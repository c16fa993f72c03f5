"""`train.micro_batch`: the kept rows in parts of N, gradients summed, give the one-pass update (what a GPU
needs when one pass's logits do not fit: the paper's preset has 256 rows of up to 3,072 new tokens)."""

from __future__ import annotations

import pytest
import torch

from agents.checkpoint import seed_everything
from agents.config import load_config
from agents.learner import Learner, loss_batch
from agents.policy import build_policy
from agents.rollout import Rollout

OVERRIDES = ["env.reward=majority", "env.min_votes=2", "curriculum.schedule=uniform", "curriculum.options={}",
             "curriculum.probe=false", "rollout.prompts_per_step=4", "output.progress=false"]


@pytest.fixture(scope="module")
def kept_batch(tiny_base_dir):
    """A policy, and a dense loss batch of kept groups from one real rollout (TTRL reward: most groups train)."""
    config = load_config(preset="tiny-cuma-gated", overrides=[f"model.path={tiny_base_dir}", *OVERRIDES])
    seed_everything(0)
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    try:
        for _ in range(5):
            data = Learner(policy, config.train, config.rollout.group_size).select(rollout.collect().data)
            if data is not None and data.batch_size[0] >= 16:
                break
    finally:
        rollout.shutdown()
    assert data is not None and data.batch_size[0] >= 16, "the rollout kept too few groups to split"
    return config, policy, loss_batch(data, policy.tokenizer.pad_token_id)


def gradient(config, policy, batch, *overrides):
    train = load_config(preset="tiny-cuma-gated", overrides=[*OVERRIDES, *overrides]).train
    learner = Learner(policy, train, config.rollout.group_size)
    policy.model.zero_grad(set_to_none=True)
    totals = learner._backward(batch.copy())
    grads = torch.cat([p.grad.reshape(-1) for p in policy.model.parameters() if p.grad is not None])
    policy.model.zero_grad(set_to_none=True)
    return grads, totals


@pytest.mark.parametrize("aggregation", ["token_mean", "prompt_mean"])
@pytest.mark.parametrize("micro_batch", [1, 5, 8])
def test_parts_sum_to_the_one_pass_gradient(kept_batch, aggregation, micro_batch):
    config, policy, batch = kept_batch
    terms = [f"train.aggregation={aggregation}", "train.kl_coef=0.1", "train.entropy_coef=0.01"]
    whole, whole_totals = gradient(config, policy, batch, *terms)
    parts, part_totals = gradient(config, policy, batch, *terms, f"train.micro_batch={micro_batch}")
    assert whole.abs().max() > 0
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(torch.tensor(part_totals), torch.tensor(whole_totals), rtol=1e-4, atol=1e-6)


def test_micro_batch_must_be_positive():
    from agents.config import ConfigError

    with pytest.raises(ConfigError, match="train.micro_batch: must be >= 1 or null"):
        load_config(overrides=["train.micro_batch=0"])
    with pytest.raises(ConfigError, match="model.dtype: float16 training needs loss scaling"):
        load_config(overrides=["model.dtype=float16"])


def test_self_certainty_in_parts_equals_one_pass(tiny_base_dir):
    """The Intuitor reward's forward over all responses is split the same way."""
    overrides = [f"model.path={tiny_base_dir}", *OVERRIDES, "env.reward=self_certainty"]
    config = load_config(preset="tiny-cuma-gated", overrides=overrides)
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    try:
        data = rollout.collect().data
        whole = data.get("token_stats").clone()
        rollout.config = load_config(preset="tiny-cuma-gated", overrides=[*overrides, "train.micro_batch=5"])
        parts = rollout._self_certainty(data.copy()).get("token_stats")
    finally:
        rollout.shutdown()
    assert data.batch_size[0] == 32 and len(set(whole.reshape(-1).tolist())) > 2
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
