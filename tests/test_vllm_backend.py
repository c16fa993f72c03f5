"""The vLLM backend's glue (agents.policy, agents.generator) through TorchRL's real `vLLMWrapper` and
`vLLMUpdaterV2`, with a stand-in for the `vllm` package itself (TEST DOUBLE: vLLM cannot run here; see
tests/vllm_stand_in.py for what it imitates and what it cannot tell).

The GPU check is lifted for these tests only (`check_vllm`), so the engine's CPU stand-in is used.
"""

from __future__ import annotations

import json

import pytest
import torch
import vllm_stand_in
from cli_helpers import cuma

from agents import policy as policy_module
from agents.config import load_config
from agents.learner import LOSS_KEYS, Learner
from agents.policy import BackendUnavailable, build_policy
from agents.rollout import Rollout
from agents.run_outputs import read_csv
from agents.trainer import Trainer

SMALL = ["model.backend=vllm", "rollout.prompts_per_step=4", "eval.n_per_level=4", "eval.samples=2",
         "output.progress=false", "output.tensorboard=false"]


@pytest.fixture
def stand_in(monkeypatch):
    vllm = vllm_stand_in.install(monkeypatch)
    monkeypatch.setattr(policy_module, "check_vllm", lambda device: None)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return vllm


def vllm_config(model_dir, *overrides, preset="tiny-ttrl"):
    return load_config(preset=preset, overrides=[f"model.path={model_dir}", *SMALL, *overrides])


@pytest.mark.parametrize("model_fixture", ["tiny_base_dir", "hub_like_model_dir"])
def test_the_vllm_generator_gives_the_loss_every_entry_it_reads(stand_in, model_fixture, request):
    config = vllm_config(request.getfixturevalue(model_fixture), "train.lr=1e-3")
    policy = build_policy(config.model, config.rollout, seed=0)
    rollout = Rollout(config, policy)
    try:
        batch = rollout.collect()
        assert batch.data is not None and len(batch.infos) == 4
        for key, _ in LOSS_KEYS[:4]:  # tokens.full, tokens.prompt and both masks: all None in TorchRL's text path
            assert batch.data.get(key, None) is not None, key
        full = batch.data.get(("tokens", "full"), as_padded_tensor=True)
        prompt = batch.data.get(("tokens", "prompt"), as_padded_tensor=True)
        mask = batch.data.get(("masks", "all_assistant_mask"), as_padded_tensor=True)
        assert full.shape[-1] == mask.shape[-1] > prompt.shape[-1] and not mask[..., :prompt.shape[-1]].any()
        texts = batch.data.get(("text", "response")).tolist()  # what the vote read: the decoded responses
        decoded = policy.tokenizer.batch_decode([row[m] for row, m in zip(full, mask)], skip_special_tokens=False)
        assert texts == decoded and any("\\boxed{" in t for t in texts) == (model_fixture == "tiny_base_dir")
        stats = Learner(policy, config.train, config.rollout.group_size).step(batch.data)
        assert stats.trained_groups > 0 and torch.isfinite(torch.tensor(stats.loss))
    finally:
        rollout.shutdown()


def test_weight_sync_loads_every_trained_weight_into_the_engine(stand_in, tiny_base_dir, tmp_path, capsys):
    config = vllm_config(tiny_base_dir, "train.steps=2", "train.lr=1e-3", "eval.every=2")
    trainer = Trainer.new(config, tmp_path / "run")
    summary = trainer.run()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["steps"] == 2 and sum(int(r["trained_groups"]) for r in rows) > 0
    engine_weights = trainer.policy.engine.llm_instance.model.state_dict()
    trained = trainer.policy.model.state_dict()
    assert set(engine_weights) == set(trained)
    assert all(torch.equal(engine_weights[k], trained[k]) for k in trained)  # float32 on CPU: exact
    assert summary["heldout_after"]["step"] == 2  # the run's own evaluation: Policy.generate_texts through vLLM
    rc, err = cuma(capsys, "eval", "--model", tmp_path / "run", "--bench", "arith", "--n", "4", "--samples", "2",
                   "--backend", "vllm", "--out", tmp_path / "eval")
    assert rc == 0, err
    report = json.loads((tmp_path / "eval" / "eval-arith.json").read_text())
    assert len(report["levels"]) == 5 and report["model"]


def test_vllm_context_is_capped_at_the_models_positions(stand_in, tiny_base_dir):
    config = vllm_config(tiny_base_dir)  # default vllm_max_model_len 4096; the tiny base has 128 positions
    policy = build_policy(config.model, config.rollout, seed=0)
    assert policy.engine.llm_instance.model.config.max_position_embeddings == 128
    greedy = policy.generate_texts(["What is 1 + 2? Answer in \\boxed{}."], max_new_tokens=6)
    assert len(greedy) == 1 and len(greedy[0]) == 1 and isinstance(greedy[0][0], str)


def test_a_multiprocess_engine_is_refused_clearly(stand_in, tiny_base_dir, monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
    with pytest.raises(BackendUnavailable, match="VLLM_ENABLE_V1_MULTIPROCESSING"):
        build_policy(vllm_config(tiny_base_dir).model, vllm_config(tiny_base_dir).rollout)
