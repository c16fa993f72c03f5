"""LoRA through peft (`model.lora_rank > 0`, agents/lora.py) on the real tiny base: only the adapters train, the
run's final model is the plain architecture with the adapters merged (and computes what the adapted one does), a
checkpoint resumes into the same run, and bad settings fail at load."""

from __future__ import annotations

import pytest
import torch

from agents.checkpoint import latest_checkpoint, load_checkpoint
from agents.config import ConfigError, load_config
from agents.evaluation import resolve_model
from agents.lora import add_lora, has_lora, merge_lora_state, merged_state_dict
from agents.policy import load_model
from agents.run_outputs import TIME_COLUMNS, read_csv
from agents.trainer import Trainer

pytest.importorskip("peft")


def _overrides(base_dir, steps: int = 2) -> list[str]:
    return [f"model.path={base_dir}", "model.lora_rank=4", "model.lora_alpha=8", "train.lr=1e-2", "train.kl_coef=0.01",
            f"train.steps={steps}", "rollout.prompts_per_step=4", "eval.n_per_level=3", "eval.samples=0",
            "eval.every=0", "output.checkpoint_every=1", "output.keep_checkpoints=5", "output.progress=false",
            "output.tensorboard=false", "env.levels=[1,2]"]


@pytest.fixture(scope="module")
def lora_run(tiny_base_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    Trainer.new(load_config(preset="tiny-oracle", overrides=_overrides(tiny_base_dir)), run_dir).run()
    return run_dir


def test_only_the_adapters_train(tiny_base_dir, lora_run):
    base, _ = load_model(str(tiny_base_dir), torch.device("cpu"))
    state = load_checkpoint(latest_checkpoint(lora_run))["model"]
    adapters = {k: v for k, v in state.items() if ".lora_" in k}
    assert adapters and all(".lora_A." in k or ".lora_B." in k for k in adapters)
    assert any(v.abs().sum() > 0 for k, v in adapters.items() if ".lora_B." in k)  # B starts at 0: it trained
    plain = merge_lora_state({k: v for k, v in state.items()}, scaling=0.0)  # the frozen base, nothing merged
    for name, weight in base.state_dict().items():
        assert torch.equal(plain[name], weight), name


def test_the_final_model_is_the_plain_architecture_with_the_adapters_merged(tiny_base_dir, lora_run):
    saved, _ = load_model(str(lora_run / "model"), torch.device("cpu"))
    assert not has_lora(saved) and not any("lora" in k or "base_layer" in k for k in saved.state_dict())
    adapted, _ = load_model(str(tiny_base_dir), torch.device("cpu"))
    add_lora(adapted, rank=4, alpha=8, seed=0)
    adapted.load_state_dict(load_checkpoint(latest_checkpoint(lora_run))["model"])
    ids = torch.tensor([[5, 9, 14, 3, 22, 7, 11]])
    with torch.no_grad():
        assert torch.allclose(saved(ids).logits, adapted(ids).logits, atol=1e-5)
    # a run directory read from its checkpoint alone (no model/) gives the same plain weights
    assert resolve_model(str(lora_run)) == (str(lora_run / "model"), None)  # model/ exists: read from there
    merged = merged_state_dict(adapted)
    for name, weight in saved.state_dict().items():
        assert torch.allclose(merged[name], weight, atol=1e-6), name


def test_a_checkpoint_alone_reads_as_the_merged_plain_weights(lora_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lora_run, run, ignore=shutil.ignore_patterns("model"))
    path, state = resolve_model(str(run))
    saved, _ = load_model(str(lora_run / "model"), torch.device("cpu"))
    assert set(state) == set(saved.state_dict())
    for name, weight in saved.state_dict().items():
        assert torch.allclose(state[name], weight, atol=1e-6), name


def test_a_lora_run_resumes_into_the_same_run(tiny_base_dir, lora_run, tmp_path):
    run_dir = tmp_path / "short"
    Trainer.new(load_config(preset="tiny-oracle", overrides=_overrides(tiny_base_dir, steps=1)), run_dir).run()
    Trainer.resume(run_dir, ["train.steps=2"]).run()

    def rows(run):
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_csv(run / "metrics.csv")]

    assert rows(run_dir) == rows(lora_run) and len(rows(run_dir)) == 2
    ours = load_checkpoint(latest_checkpoint(run_dir))["model"]
    straight = load_checkpoint(latest_checkpoint(lora_run))["model"]
    assert all(torch.equal(ours[k], straight[k]) for k in straight)


def test_lora_with_vllm_engines_on_ray_workers_is_refused():
    with pytest.raises(ConfigError, match="model.lora_rank with vLLM engines on Ray workers"):
        load_config(preset="tiny-oracle", overrides=["model.lora_rank=4", "model.backend=vllm", "model.device=cuda",
                                                     "rollout.workers=2"])


@pytest.mark.parametrize("override, message", [
    ("model.lora_rank=-1", "model.lora_rank"),
    ("model.lora_alpha=0", "model.lora_alpha"),
    ("model.lora_targets=[]", "model.lora_targets"),
])
def test_bad_lora_settings_fail_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(preset="tiny-oracle", overrides=[override])


def test_targets_that_match_no_layer_are_refused(tiny_base_dir):
    model, _ = load_model(str(tiny_base_dir), torch.device("cpu"))
    with pytest.raises(ValueError, match="no_such_proj"):
        add_lora(model, rank=2, alpha=4, targets=["no_such_proj"])
