"""`ChosenTokenScorer` gives TorchRL's log-probs, loss and gradient while scoring only response columns.

Real parts: a Qwen2.5-shaped model (BPE vocabulary, ChatML, random weights) and the tiny base, batches collected
by the agent's own rollout, TorchRL's `GRPOLoss`.
"""

from __future__ import annotations

import pytest
import torch
from torchrl.modules.llm import TransformersWrapper

from agents.checkpoint import seed_everything
from agents.chosen_token_scorer import ChosenTokenScorer, chosen_token_log_probs
from agents.config import load_config
from agents.learner import Learner, OnPolicyGRPOLoss, loss_batch
from agents.policy import build_policy
from agents.rollout import Rollout


def _kept_batch(model_dir, *overrides):
    config = load_config(preset="tiny-ttrl", overrides=[
        f"model.path={model_dir}", "rollout.prompts_per_step=4", "rollout.max_new_tokens=12",
        "curriculum.probe=false", "output.progress=false", *overrides])
    seed_everything(0)
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    try:
        learner = Learner(policy, config.train, config.rollout.group_size)
        for _ in range(6):
            data = learner.select(rollout.collect().data)
            if data is not None:
                return policy, loss_batch(data, policy.tokenizer.pad_token_id)
    finally:
        rollout.shutdown()
    pytest.skip("no group with a learning signal in 6 batches")


def _scorer(cls, policy):
    return cls(policy.model, tokenizer=policy.tokenizer, input_mode="tokens", generate=False,
               return_log_probs=True, pad_output=True, device=policy.device)


@pytest.mark.parametrize("model", ["hub_like_model_dir", "tiny_base_dir"])
def test_same_log_probs_loss_and_gradient_as_torchrl(model, request):
    policy, batch = _kept_batch(request.getfixturevalue(model))
    tokens = batch.get(("tokens", "full"), as_padded_tensor=True, padding_side="left", padding_value=-100)
    results = {}
    for name, cls in (("TransformersWrapper", TransformersWrapper), ("ChosenTokenScorer", ChosenTokenScorer),
                      ("shared prompts", ChosenTokenScorer)):
        scorer = _scorer(cls, policy)
        scorer.share_prompts = name == "shared prompts"
        with torch.no_grad():
            dist = scorer._get_sft_dist(batch.copy())
            scored, mask = dist.log_prob(tokens), dist.mask
        policy.model.zero_grad(set_to_none=True)
        calls = []
        hook = policy.model.get_decoder().register_forward_hook(lambda module, args, out, calls=calls: calls.append(1))
        try:
            loss = OnPolicyGRPOLoss(scorer, masking_strategy="sft")(batch.copy()).loss_objective
        finally:
            hook.remove()
        assert len(calls) == (2 if name == "shared prompts" else 1)  # prompt block once, then the rest
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in policy.model.parameters() if p.grad is not None])
        results[name] = (scored, mask, loss.detach(), grad)
    policy.model.zero_grad(set_to_none=True)
    (ref_lp, ref_mask, ref_loss, ref_grad) = results["TransformersWrapper"]
    for name in ("ChosenTokenScorer", "shared prompts"):  # a group's prompt forwarded once: the same numbers
        (lp, mask, fast_loss, grad) = results[name]
        assert torch.equal(mask, ref_mask) and mask.any() and not mask.all()
        assert torch.allclose(lp, ref_lp, atol=1e-5, rtol=1e-5)  # 0 off the mask in both
        assert torch.allclose(fast_loss, ref_loss, atol=1e-6, rtol=1e-5) and ref_loss != 0
        assert torch.allclose(grad, ref_grad, atol=1e-6, rtol=1e-4)


def test_an_entropy_bonus_gets_torchrl_entropy(tiny_base_dir):
    policy, batch = _kept_batch(tiny_base_dir)
    with torch.no_grad():
        ref = _scorer(TransformersWrapper, policy)._get_sft_dist(batch.copy()).entropy()
        fast = _scorer(ChosenTokenScorer, policy)._get_sft_dist(batch.copy()).entropy()
    assert torch.allclose(fast, ref, atol=1e-5)


def test_chunks_give_the_full_log_softmax():
    torch.manual_seed(0)
    hidden, weight = torch.randn(3, 7, 16, dtype=torch.float64), torch.randn(50, 16, dtype=torch.float64)
    tokens = torch.randint(0, 50, (3, 7))
    full = torch.log_softmax(hidden @ weight.T, -1).gather(-1, tokens[..., None]).squeeze(-1)
    for chunk in (1, 5, 21, 1000):
        assert torch.allclose(chosen_token_log_probs(hidden, weight, tokens, chunk_rows=chunk).double(), full)


def test_the_preset_flag_builds_the_scorer(tiny_base_dir):
    from agents.policy import build_policy

    for flag, cls in (("true", ChosenTokenScorer), ("false", TransformersWrapper)):
        config = load_config(preset="tiny-ttrl", overrides=[f"model.path={tiny_base_dir}",
                                                           f"model.chosen_token_logprobs={flag}"])
        assert type(build_policy(config.model, config.rollout).scorer) is cls
