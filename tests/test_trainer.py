"""The GRPO agent on the real tiny base: rollouts, the loss, masked-group handling, rewards, run outputs."""

from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict

from agents.checkpoint import seed_everything
from agents.config import load_config
from agents.learner import GRPOLoss, Learner, OnPolicyGRPOLoss, lr_factor
from agents.policy import build_policy, render_prompts
from agents.rollout import Rollout, make_probe
from agents.run_outputs import EVAL_COLUMNS, METRIC_COLUMNS, read_csv
from agents.tiny.model import load_tiny_base
from agents.trainer import Trainer

SMALL = ["rollout.prompts_per_step=4", "eval.n_per_level=8", "eval.samples=2", "output.progress=false",
         "output.tensorboard=false"]


def small_config(base_dir, *overrides, preset="tiny-cuma-gated"):
    return load_config(preset=preset, overrides=[f"model.path={base_dir}", *SMALL, *overrides])


@pytest.fixture(scope="module")
def short_run(tiny_base_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "short"
    config = small_config(tiny_base_dir, "train.steps=4", "eval.every=2", "output.checkpoint_every=2")
    summary = Trainer.new(config, run_dir).run()
    return run_dir, summary


def test_a_short_run_writes_every_output(short_run):
    run_dir, summary = short_run
    for name in ("config.yaml", "metrics.csv", "eval.csv", "report.png", "summary.json", "model/config.json"):
        assert (run_dir / name).is_file(), name
    rows = read_csv(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and tuple(rows[0]) == METRIC_COLUMNS
    for row in rows:
        assert 0.0 <= float(row["mask_rate"]) <= 1.0 and 0.0 <= float(row["agreement"]) <= 1.0
        assert 0.0 <= float(row["collapse"]) <= 1.0 and float(row["level"]) in (1, 2, 3, 4, 5)
        assert row["majority_acc"] != "" and int(row["trained_groups"]) <= int(row["kept_groups"]) <= 4
    evals = read_csv(run_dir / "eval.csv")
    assert tuple(evals[0]) == EVAL_COLUMNS
    assert sorted({int(e["step"]) for e in evals}) == [0, 2, 4] and {e["level"] for e in evals} == set("12345")
    assert (run_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "report.png").stat().st_size > 20_000
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["steps"] == 4 and not saved["interrupted"] and saved["step_s_median"] > 0
    assert set(saved["heldout_before"]["levels"]) == set("12345") and saved["heldout_after"]["step"] == 4
    assert summary["heldout_after"]["levels"][1]["n"] <= 8
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-0000002.pt", "step-0000004.pt"]


def test_the_final_model_loads_for_evaluation(short_run):
    from transformers import AutoModelForCausalLM

    run_dir, _ = short_run
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    assert sum(p.numel() for p in model.parameters()) > 10_000


@pytest.fixture(scope="module")
def stack(tiny_base_dir):
    """Policy + rollout + learner on the tiny base with the TTRL reward (groups rarely masked)."""
    config = small_config(tiny_base_dir, "env.reward=majority", "env.min_votes=2", "curriculum.schedule=uniform",
                          "curriculum.options={}", "curriculum.probe=false", "rollout.prompts_per_step=8")
    torch.manual_seed(0)
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    learner = Learner(policy, config.train, config.rollout.group_size)
    yield config, policy, rollout, learner
    rollout.shutdown()


def test_prompts_rendered_for_eval_and_probes_equal_the_envs(stack):
    config, policy, rollout, _ = stack
    td = rollout.env.reset()
    queries, prompts = td.get("query").tolist(), td.get(("text", "prompt")).tolist()
    assert render_prompts(policy.tokenizer, queries) == prompts


def test_on_policy_loss_equals_grpo_with_separately_scored_old_log_probs(stack):
    """The reuse trick (old log-probs from the loss's own forward) gives GRPOLoss's value and gradient."""
    config, policy, rollout, learner = stack
    data = None
    for _ in range(6):
        data = learner.select(rollout.collect().data)
        if data is not None:
            break
    assert data is not None, "no group with a non-zero advantage in 6 batches"
    ours = OnPolicyGRPOLoss(policy.scorer, masking_strategy="sft", entropy_bonus=False)
    reference = GRPOLoss(policy.scorer, masking_strategy="sft", entropy_bonus=False)
    scored = data.copy()
    with torch.no_grad():  # gotcha 1: generation leaves log_probs.full empty; score it with the same model
        scored.set(("log_probs", "full"), policy.scorer(data.copy()).get(("log_probs", "full")))
    grads = []
    for loss_module, batch in ((ours, data), (reference, scored)):
        policy.model.zero_grad(set_to_none=True)
        loss = loss_module(batch).loss_objective
        loss.backward()
        grads.append((float(loss.detach()), torch.cat([p.grad.reshape(-1) for p in policy.model.parameters()])))
    policy.model.zero_grad(set_to_none=True)
    assert math.isclose(grads[0][0], grads[1][0], rel_tol=1e-4, abs_tol=1e-6)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-3, atol=1e-6)


def test_masked_and_zero_advantage_groups_never_reach_the_loss():
    g = 4
    advantage = torch.tensor([[0.0] * g, [1.0, -1.0, 1.0, -1.0], [0.0] * g]).reshape(-1, 1, 1)
    masked = torch.tensor([True, False, False]).repeat_interleave(g).reshape(-1, 1)
    data = TensorDict({"advantage": advantage, ("next", "masked"): masked, "i": torch.arange(3 * g)}, [3 * g])

    def select(masked_groups, skip):
        fake = SimpleNamespace(group_size=g, config=SimpleNamespace(masked_groups=masked_groups,
                                                                    skip_uniform_groups=skip))
        out = Learner.select(fake, data)
        return None if out is None else sorted(set((out["i"] // g).tolist()))

    assert select("drop", True) == [1]
    assert select("zero_advantage", True) == [0, 1]  # a kept masked group stays, advantage 0
    assert select("drop", False) == [0, 1, 2]


@pytest.mark.parametrize("masked_groups", ["drop", "zero_advantage"])
def test_the_vote_drops_or_keeps_masked_groups(tiny_base_dir, masked_groups):
    config = small_config(tiny_base_dir, "env.min_votes=8", f"train.masked_groups={masked_groups}",
                          "curriculum.probe=false", "curriculum.schedule=uniform",
                          "curriculum.options={}")  # 8 of 8 on every level: most groups are masked
    seed_everything(config.seed)  # the samples, hence the masks, must not depend on the tests run before
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    try:
        batch = rollout.collect()
    finally:
        rollout.shutdown()
    masked = sum(i["masked"] for i in batch.infos)
    assert len(batch.infos) == 4 and masked >= 1
    if masked_groups == "drop":
        assert batch.kept_groups == 4 - masked
        assert batch.data is None or not batch.data.get(("next", "masked")).any()
    else:
        assert batch.kept_groups == 4
        kept_masked = batch.data.get(("next", "masked")).reshape(-1)
        assert kept_masked.any() and (batch.data.get("advantage").reshape(-1)[kept_masked] == 0).all()


@pytest.mark.parametrize("reward", ["masked_majority", "majority", "self_certainty", "ground_truth"])
def test_every_reward_function_trains(tiny_base_dir, reward):
    config = small_config(tiny_base_dir, f"env.reward={reward}", "env.min_votes=2", "curriculum.schedule=uniform",
                          "curriculum.options={}", "curriculum.probe=false", "train.kl_coef=0.05")
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    learner = Learner(policy, config.train, config.rollout.group_size)
    try:
        for _ in range(2):
            batch = rollout.collect()
            stats = learner.step(batch.data)
            assert all(i["reward_name"] == reward for i in batch.infos) and len(batch.infos) == 4
            assert math.isfinite(stats.loss) and math.isfinite(stats.kl_to_ref) and stats.kl_to_ref >= -1e-6
    finally:
        rollout.shutdown()
    if reward == "self_certainty":
        rewards = [r for i in batch.infos for r in i["rewards"]]
        assert len(set(rewards)) > 2  # real-valued certainty, not a 0/1 vote


@pytest.mark.parametrize("empty_votes", [False, True])
def test_env_empty_votes_reaches_the_agents_vote_and_probe(tiny_base_dir, empty_votes):
    """On level 5 the base never starts greedily with worked steps: its first token is `\\boxed{` (one token) or
    the `L` of `Let me think.` (near-greedy sampling), so with one new token no completion has an answer: only
    TTRL's convention rewards that."""
    config = small_config(tiny_base_dir, "env.reward=majority", f"env.empty_votes={str(empty_votes).lower()}",
                          "rollout.max_new_tokens=1", "rollout.temperature=0.05", "curriculum.schedule=fixed",
                          "curriculum.options={level: 5}")
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    try:
        infos = rollout.collect().infos
        probed = make_probe(policy, config)(5, [rollout.curriculum.sampler.source.get(5, 0)])
    finally:
        rollout.shutdown()
    assert len(infos) == 4 and all(i["parse_rate"] == 0 and i["majority"] is None for i in infos)
    assert all(i["rewards"] == [float(empty_votes)] * 8 for i in infos)
    assert probed[0]["parse_rate"] == 0 and probed[0]["agreement"] == float(empty_votes)


def test_the_probe_samples_without_training(stack):
    config, policy, rollout, _ = stack
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    problems = [rollout.curriculum.sampler.source.get(3, i) for i in range(3)]
    infos = make_probe(policy, config)(3, problems)
    assert len(infos) == 3 and all(i["group_size"] == config.rollout.group_size for i in infos)
    assert all(0.0 <= i["agreement"] <= 1.0 and "masked" in i for i in infos)
    assert all(torch.equal(before[k], v) for k, v in policy.model.state_dict().items())


def test_warmup_then_cosine_schedule():
    factors = [lr_factor(s, total=20, warmup=5, schedule="cosine", min_ratio=0.1) for s in range(21)]
    assert factors[:5] == [0.2, 0.4, 0.6, 0.8, 1.0] and factors[5] == 1.0
    assert all(a >= b for a, b in zip(factors[5:], factors[6:])) and math.isclose(factors[20], 0.1)
    assert lr_factor(50, total=20, warmup=5, schedule="constant", min_ratio=0.1) == 1.0


@pytest.mark.parametrize("template,expected", [(None, "compact"), ("default", "default")])
def test_held_out_problems_are_asked_in_the_prompt_the_run_trains_on(tiny_base_dir, tmp_path, template, expected):
    """`env.prompt_template` changes the training prompt; the held-out evaluation uses the same one (without
    it: the bench's own, compact for arith)."""
    overrides = [] if template is None else [f"env.prompt_template={template}"]
    trainer = Trainer.new(small_config(tiny_base_dir, *overrides), tmp_path / "run")
    trainer.build()
    try:
        assert trainer._heldout[1] == expected
    finally:
        trainer.rollout.shutdown()


def test_bf16_autocast_path_trains_on_cpu(tiny_base_dir, tmp_path):
    """The mixed-precision path CUDA takes by default (`dtype: auto` = bf16 autocast over fp32 weights), on CPU."""
    config = small_config(tiny_base_dir, "model.device=cpu", "model.dtype=bfloat16", "train.steps=3", "eval.every=0",
                          "train.lr=1e-3", "train.warmup_steps=0")
    trainer = Trainer.new(config, tmp_path / "bf16")
    summary = trainer.run()
    assert summary["steps"] == 3
    rows = read_csv(tmp_path / "bf16" / "metrics.csv")
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["grad_norm"])) for r in rows)
    policy = trainer.policy
    assert policy.dtype == torch.bfloat16
    with policy.autocast():
        assert policy.model(input_ids=torch.tensor([[5, 6, 7]])).logits.dtype == torch.bfloat16
    params = dict(policy.model.named_parameters())
    assert all(p.dtype == torch.float32 for p in params.values())  # master weights stay fp32
    before = dict(load_tiny_base(tiny_base_dir)[0].named_parameters())
    assert any(not torch.equal(before[k], params[k]) for k in before)  # the optimizer stepped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tiny_preset_runs_on_cuda(tiny_base_dir, tmp_path):
    config = small_config(tiny_base_dir, "model.device=cuda", "train.steps=3", "eval.every=0")
    summary = Trainer.new(config, tmp_path / "cuda").run()
    assert summary["steps"] == 3


@pytest.mark.vllm
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None or not torch.cuda.is_available(),
                    reason="needs vllm and a CUDA GPU (not exercised in CI)")
def test_vllm_backend_trains_with_weight_sync(tiny_base_dir, tmp_path):
    config = small_config(tiny_base_dir, "model.backend=vllm", "model.device=cuda", "train.steps=2", "eval.every=0")
    summary = Trainer.new(config, tmp_path / "vllm").run()
    assert summary["steps"] == 2


def test_zero_steps_evaluate_the_start_model_only(tiny_base_dir, tmp_path):
    """`train.steps: 0` (the `*-base` presets): one held-out evaluation, the run directory, no training."""
    summary = Trainer.new(small_config(tiny_base_dir, "train.steps=0"), tmp_path / "run").run()
    assert summary["steps"] == 0 and read_csv(tmp_path / "run" / "metrics.csv") == []
    assert {int(e["step"]) for e in read_csv(tmp_path / "run" / "eval.csv")} == {0}
    assert (tmp_path / "run" / "model" / "config.json").is_file()
