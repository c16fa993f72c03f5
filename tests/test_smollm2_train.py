"""One real training step of the agent on a real pretrained LLM (SmolLM2-135M-Instruct, from the package index,
installed once per machine into the cache): the smollm2 presets load, roll out through the model's chat
template, vote, and update the weights through the chosen-token scorer."""

from __future__ import annotations

import json

import pytest
import torch

from agents.config import load_config
from agents.run_outputs import read_csv
from agents.trainer import Trainer

pytestmark = pytest.mark.slow

TINY_BUDGET = ["model.num_threads=1", "rollout.prompts_per_step=2", "rollout.group_size=4",
               "rollout.max_new_tokens=16", "env.levels=[1]", "eval.n_per_level=2", "eval.max_new_tokens=8",
               "output.progress=false", "output.tensorboard=false", "train.warmup_steps=0", "train.lr=1e-4"]


def test_one_real_step_on_smollm2(smollm2_dir, tmp_path):
    # self-certainty (Intuitor) scores each completion on its own, so a 16-token group always has unequal rewards
    # and trains; the vote-based presets' groups are often all unanswered at this budget (nothing to learn)
    config = load_config(preset="smollm2-intuitor", overrides=["train.steps=1", *TINY_BUDGET])
    assert config.model.path == "smollm2-135m" and config.model.chosen_token_logprobs
    trainer = Trainer.new(config, tmp_path / "run")
    trainer.build()
    before = {k: v.detach().clone() for k, v in trainer.policy.model.named_parameters()}
    summary = trainer.run()
    (row,) = read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["steps"] == 1 and int(row["kept_groups"]) == 2
    after = dict(trainer.policy.model.named_parameters())
    changed = any(not torch.equal(before[k], after[k].detach()) for k in before)
    assert changed == (int(row["trained_groups"]) > 0)
    assert int(row["trained_groups"]) > 0 and abs(float(row["loss"])) < 1e3
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(saved["heldout_after"]["levels"]) == {"1"}
    assert (tmp_path / "run" / "model" / "config.json").is_file()


@pytest.mark.parametrize("preset", ["smollm2-base", "smollm2-cuma-gated", "smollm2-cuma", "smollm2-ttrl",
                                    "smollm2-ttrl-novote", "smollm2-intuitor", "smollm2-oracle"])
def test_the_smollm2_presets_read_boxed_answers_only(preset):
    config = load_config(preset=preset)
    assert config.model.path == "smollm2-135m" and config.env.last_number_fallback is False
    assert config.env.levels == [1, 2] and config.rollout.group_size == 8


def test_the_base_preset_evaluates_without_training():
    assert load_config(preset="smollm2-base").train.steps == 0
