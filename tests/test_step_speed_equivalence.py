"""The step's speed-ups change nothing: TorchRL's collector path gives the same batches, the dense loss batch
the same loss and gradient, and a collected batch is never changed by later collects."""

from __future__ import annotations

import pytest
import torch
from tensordict import lazy_stack

from agents.checkpoint import seed_everything
from agents.config import load_config
from agents.learner import Learner, OnPolicyGRPOLoss, loss_batch
from agents.policy import build_policy
from agents import rollout as rollout_module
from agents.rollout import Rollout

PADDED_KEYS = [("tokens", "full"), ("tokens", "prompt"), ("tokens", "response"), ("masks", "all_attention_mask")]
KEYS = ["advantage", ("next", "reward"), ("next", "masked"), "level", "done", ("next", "done")]
TEXT_KEYS = [("text", "prompt"), ("text", "response"), ("text", "full"), ("next", "answer"), "problem_id", "query",
             ("next", "text", "prompt")]


def config_for(base_dir, *overrides, preset="tiny-ttrl"):
    return load_config(preset=preset, overrides=[f"model.path={base_dir}", "rollout.prompts_per_step=4",
                                                 "output.progress=false", *overrides])


def collect(config, steps, *, torchrl_path=False, monkeypatch=None):
    """`steps` batches of a fresh Rollout; `torchrl_path`: the plain TorchRL path (its own LLMCollector, a
    generator that returns log-probs, a copying GroupVote)."""
    if torchrl_path:
        import torchrl.modules.llm as llm

        wrapper = llm.TransformersWrapper

        def with_log_probs(*args, **kwargs):
            kwargs["return_log_probs"] = True
            return wrapper(*args, **kwargs)

        monkeypatch.setattr(llm, "TransformersWrapper", with_log_probs)
        monkeypatch.setattr(rollout_module, "_OneStepCollector", rollout_module.LLMCollector)
    seed_everything(0)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    if torchrl_path:
        monkeypatch.undo()
        rollout.vote.copy = True
    assert isinstance(rollout.collector, rollout_module._OneStepCollector) != torchrl_path
    assert policy.generator.return_log_probs == torchrl_path
    try:
        return [rollout.collect() for _ in range(steps)], policy
    finally:
        rollout.shutdown()


def snapshot(data):
    """Every compared entry of a batch, copied (group ids as first-appearance ranks: their uid is random)."""
    if data is None:
        return None
    out = {k: data.get(k, as_padded_tensor=True, padding_side="left", padding_value=0).clone() for k in PADDED_KEYS}
    out.update({k: data.get(k).clone() for k in KEYS})
    out.update({k: list(data.get(k).tolist()) for k in TEXT_KEYS})
    first: dict = {}
    out["group"] = [first.setdefault(g, len(first)) for g in data.get("group_id").tolist()]
    return out


def assert_same(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


@pytest.mark.parametrize("preset", ["tiny-ttrl", "tiny-cuma-gated"])
def test_the_fast_collector_gives_torchrl_collectors_batches(tiny_base_dir, monkeypatch, preset):
    config = config_for(tiny_base_dir, "curriculum.probe=false", preset=preset)
    ours, _ = collect(config, 3)
    theirs, _ = collect(config, 3, torchrl_path=True, monkeypatch=monkeypatch)
    for a, b in zip(ours, theirs):
        assert a.infos == b.infos and a.kept_groups == b.kept_groups
        assert_same(snapshot(a.data), snapshot(b.data))


def test_a_batch_is_not_changed_by_later_collects(tiny_base_dir):
    config = config_for(tiny_base_dir, "curriculum.probe=false")
    seed_everything(0)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    try:
        first = rollout.collect()
        before = snapshot(first.data)
        for _ in range(2):
            rollout.collect()
        assert_same(before, snapshot(first.data))
    finally:
        rollout.shutdown()


def ragged(data):
    """The batch with its first group's members left-padded by two more positions (a lazy, ragged stack)."""
    members = list(data.unbind(0))
    pad = 0
    for i in range(len(members) // 2):
        m = members[i].clone()
        for key, value in ((("tokens", "full"), pad), (("tokens", "prompt"), pad),
                           (("masks", "all_attention_mask"), False)):
            t = m.get(key)
            m.set(key, torch.cat([torch.full((2,), value, dtype=t.dtype), t]))
        members[i] = m
    return lazy_stack(members)


@pytest.mark.parametrize("options", [
    {},
    {"entropy_bonus": True, "entropy_coeff": 0.01, "aggregation": "prompt_mean"},
])
@pytest.mark.parametrize("shape", ["padded", "ragged"])
def test_the_dense_loss_batch_gives_the_same_loss_and_gradient(tiny_base_dir, options, shape):
    config = config_for(tiny_base_dir, "curriculum.probe=false", "rollout.prompts_per_step=6")
    batches, policy = collect(config, 4)
    learner = Learner(policy, config.train, config.rollout.group_size)
    data = next(d for d in (learner.select(b.data) for b in batches) if d is not None)
    if shape == "ragged":
        data = ragged(data)
    loss_module = OnPolicyGRPOLoss(policy.scorer, masking_strategy="sft", **options)
    results = []
    for batch in (data, loss_batch(data, policy.tokenizer.pad_token_id)):
        policy.model.zero_grad(set_to_none=True)
        out = loss_module(batch)
        loss = out.loss_objective + (out.loss_entropy if options else 0)
        loss.backward()
        results.append((loss.detach(), torch.cat([p.grad.reshape(-1) for p in policy.model.parameters()])))
    policy.model.zero_grad(set_to_none=True)
    assert type(data).__name__ == "LazyStackedTensorDict"
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][0] != 0


def test_the_learner_step_is_unchanged_with_a_kl_reference(tiny_base_dir):
    """Learner.step on the dense batch equals a step with TorchRL's loss on the original (lazy) batch."""
    config = config_for(tiny_base_dir, "curriculum.probe=false", "train.kl_coef=0.05")
    batches, policy = collect(config, 3)
    data = next(b.data for b in batches if b.data is not None)
    learner = Learner(policy, config.train, config.rollout.group_size)
    selected = learner.select(data)
    with torch.no_grad():
        ref = learner.reference(selected.copy()).get(("log_probs", "full")).float()
    reference_batch = selected.copy()
    reference_batch.set(("next", "ref_log_probs", "full"), ref)
    out = learner.loss_module(reference_batch)
    expected = float((out.loss_objective + out.loss_kl_to_ref).detach())
    stats = learner.step(data)
    assert stats.loss == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert stats.kl_to_ref == pytest.approx(float(out.kl_to_ref), rel=1e-6, abs=1e-9)
