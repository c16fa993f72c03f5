"""`train.loss: grpo | dapo | cispo`: TorchRL's GRPOLoss, DAPO and CISPOLoss, on-policy, on the real tiny base."""

from __future__ import annotations

import math

import pytest
import torch
from torchrl.objectives.llm import DAPO, CISPOLoss, GRPOLoss

from agents.checkpoint import seed_everything
from agents.config import Config, ConfigError, load_config
from agents.config_sections import TrainConfig
from agents.experiments.study_cells import _without_later_defaults
from agents.learner import Learner
from agents.losses import OnPolicy, make_loss
from agents.policy import build_policy
from agents.rollout import Rollout
from agents.run_outputs import read_csv
from agents.tiny.model import load_tiny_base
from agents.trainer import Trainer

TORCHRL_CLASS = {"grpo": GRPOLoss, "dapo": DAPO, "cispo": CISPOLoss}
SMALL = ["rollout.prompts_per_step=4", "eval.n_per_level=8", "eval.samples=2", "output.progress=false",
         "output.tensorboard=false"]


def small_config(base_dir, *overrides):
    return load_config(preset="tiny-cuma-gated", overrides=[f"model.path={base_dir}", *SMALL, *overrides])


@pytest.mark.parametrize("overrides,message", [
    (["train.loss=ppo"], "train.loss: must be one of grpo, dapo, cispo, got 'ppo'"),
    (["train.loss=dapo", "train.aggregation=prompt_mean"], "train.aggregation: dapo averages its loss over tokens"),
    (["train.clip_epsilon_high=0"], "train.clip_epsilon_high: must be > 0 or null, got 0.0"),
])
def test_a_bad_loss_setting_is_one_config_error_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("loss,high,bounds", [("grpo", None, (0.2, 0.2)), ("dapo", None, (0.2, 0.28)),
                                              ("cispo", None, (0.2, 0.2)), ("grpo", 0.3, (0.2, 0.3)),
                                              ("dapo", 0.25, (0.2, 0.25))])
def test_each_loss_is_its_torchrl_class_with_its_clip_bounds(loss, high, bounds):
    module = make_loss(None, TrainConfig(loss=loss, clip_epsilon_high=high))
    assert isinstance(module, TORCHRL_CLASS[loss]) and isinstance(module, OnPolicy)
    assert type(module).__mro__[2] is TORCHRL_CLASS[loss]  # the class itself, not a sibling
    low_high = (float(module.clip_epsilon_low), float(module.clip_epsilon_high))
    assert low_high == pytest.approx(bounds)


def _objective(loss: str, ratio: float, advantage: float) -> tuple[float, float]:
    """(loss, d loss / d log ratio) of one token under TorchRL's objective for `loss`."""
    log_weight = torch.tensor([[math.log(ratio)]], requires_grad=True)
    value, _ = make_loss(None, TrainConfig(loss=loss))._compute_policy_objective(
        log_weight, torch.tensor([[advantage]]))
    value.sum().backward()
    return round(float(value.detach()), 4), round(float(log_weight.grad), 4)


def test_the_objectives_agree_at_ratio_one_and_part_off_policy():
    """On-policy (ratio 1) all three are -A with gradient -A. Off policy: DAPO's higher upper clip keeps the
    gradient of an up-weighted token GRPO's clip stops; TorchRL's CISPO clips the weight whatever the
    advantage's sign, and a clipped token gets no gradient (the clamp is not a stop-gradient)."""
    for loss in TORCHRL_CLASS:
        assert _objective(loss, 1.0, 1.0) == (-1.0, -1.0) and _objective(loss, 1.0, -2.0) == (2.0, 2.0)
    assert _objective("grpo", 1.25, 1.0) == (-1.2, 0.0)
    assert _objective("dapo", 1.25, 1.0) == (-1.25, -1.25)
    assert _objective("cispo", 1.25, 1.0) == (-1.2, 0.0)
    assert _objective("grpo", 0.7, 1.0) == (-0.7, -0.7)     # PPO's min takes the unclipped, smaller gain
    assert _objective("cispo", 0.7, 1.0) == (-0.8, 0.0)
    assert _objective("grpo", 1.5, -1.0) == (1.5, 1.5)
    assert _objective("cispo", 1.5, -1.0) == (1.2, 0.0)


def test_finished_study_cells_stay_finished_with_the_default_loss():
    """The keys came after the published cells were run: a cell spec drops them while they hold their defaults."""
    assert not {"loss", "clip_epsilon_high"} & set(_without_later_defaults(Config().to_dict())["train"])
    dapo = Config()
    dapo.train.loss = "dapo"
    assert _without_later_defaults(dapo.to_dict())["train"]["loss"] == "dapo"


def test_on_policy_the_three_losses_give_the_same_loss_and_gradient(tiny_base_dir):
    """The learner's old log-probs are its own forward's (ratio 1), so no clip binds: one batch, three losses,
    one loss value and one gradient."""
    config = small_config(tiny_base_dir, "env.reward=majority", "curriculum.schedule=uniform",
                          "curriculum.options={}", "curriculum.probe=false", "rollout.prompts_per_step=8")
    seed_everything(config.seed)
    policy = build_policy(config.model, config.rollout)
    rollout = Rollout(config, policy)
    learner = Learner(policy, config.train, config.rollout.group_size)
    try:
        data = None
        for _ in range(6):
            data = learner.select(rollout.collect().data)
            if data is not None:
                break
    finally:
        rollout.shutdown()
    assert data is not None, "no group with a non-zero advantage in 6 batches"
    results = []
    for loss in TORCHRL_CLASS:
        module = make_loss(policy.scorer, TrainConfig(loss=loss), policy.device)
        policy.model.zero_grad(set_to_none=True)
        out = module(data.copy())
        out.loss_objective.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in policy.model.parameters() if p.grad is not None])
        results.append((float(out.loss_objective.detach()), grad, float(out.clip_fraction)))
    policy.model.zero_grad(set_to_none=True)
    for value, grad, clip_fraction in results:
        assert value == results[0][0] and torch.equal(grad, results[0][1]) and clip_fraction == 0.0
    assert results[0][1].abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["grpo", "dapo", "cispo"])
def test_each_loss_trains_the_tiny_preset(tiny_base_dir, tmp_path, loss):
    config = small_config(tiny_base_dir, f"train.loss={loss}", "train.steps=3", "eval.every=0", "train.lr=1e-3",
                          "train.warmup_steps=0", "env.reward=majority")
    trainer = Trainer.new(config, tmp_path / loss)
    assert trainer.run()["steps"] == 3
    module = trainer.learner.loss_module
    assert isinstance(module, TORCHRL_CLASS[loss]) and isinstance(module, OnPolicy)
    rows = read_csv(tmp_path / loss / "metrics.csv")
    assert len(rows) == 3 and sum(int(r["trained_groups"]) for r in rows) > 0
    assert all(math.isfinite(float(r["loss"])) and math.isfinite(float(r["grad_norm"])) for r in rows)
    before = dict(load_tiny_base(tiny_base_dir)[0].named_parameters())
    after = dict(trainer.policy.model.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)
