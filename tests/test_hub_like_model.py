"""The agent on a hub-shaped model (tests/hub_like.py: byte-level BPE loaded as Qwen2Tokenizer, ChatML,
grouped-query attention, tied embeddings, eos as pad): what a user of `Qwen/Qwen2.5-0.5B` runs, at toy size.

Random weights, so the outputs are garbage; what is checked is the plumbing a real hub model goes through.
"""

from __future__ import annotations

import json

import torch
from cli_helpers import cuma
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.config import load_config
from agents.policy import render_prompts
from agents.run_outputs import read_csv
from agents.trainer import Trainer


def test_the_agent_trains_and_saves_a_hub_shaped_model(hub_like_model_dir, tmp_path, capsys):
    config = load_config(preset="tiny-ttrl", overrides=[
        f"model.path={hub_like_model_dir}", "train.steps=2", "train.lr=1e-3", "rollout.prompts_per_step=4",
        "eval.every=2", "eval.n_per_level=4", "eval.samples=2", "output.progress=false", "output.tensorboard=false"])
    before = AutoModelForCausalLM.from_pretrained(hub_like_model_dir).state_dict()
    Trainer.new(config, tmp_path / "run").run()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 2 and sum(int(r["trained_groups"]) for r in rows) > 0
    assert all(float(r["parse_rate"]) > 0 for r in rows)  # BPE text decodes to parsable numbers
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert after.config.num_key_value_heads == 2 and after.config.tie_word_embeddings
    assert any(not torch.equal(before[k], v) for k, v in after.state_dict().items() if k in before)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert type(tokenizer).__name__ == "Qwen2Tokenizer" and tokenizer.pad_token == "<|endoftext|>"
    prompt = render_prompts(tokenizer, ["What is 1 + 2?"])[0]  # what the env and the evaluation ask
    assert prompt == "<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n"
    rc, err = cuma(capsys, "eval", "--model", tmp_path / "run", "--bench", "arith", "--n", "4", "--samples", "2",
                   "--out", tmp_path / "eval")
    assert rc == 0, err
    report = json.loads((tmp_path / "eval" / "eval-arith.json").read_text())
    assert report["bench"] == "arith" and len(report["levels"]) == 5


def test_the_papers_preset_runs_on_the_cpu_with_a_hub_shaped_model(hub_like_model_dir, data_dir, tmp_path):
    """`qwen2.5-0.5b-cuma` (MATH levels 1-5 in order, the default template, masked majority) with the GPU keys
    turned to the CPU: the MATH pool, its long LaTeX prompts, sympy grading and MATH-500 held out."""
    config = load_config(preset="qwen2.5-0.5b-cuma", overrides=[
        f"model.path={hub_like_model_dir}", "model.backend=transformers", "model.device=cpu", "model.dtype=float32",
        f"env.data_dir={data_dir}", "rollout.prompts_per_step=2", "rollout.max_new_tokens=16", "train.steps=2",
        "eval.every=2", "eval.n_per_level=2", "eval.samples=2", "eval.max_new_tokens=16", "output.progress=false",
        "output.tensorboard=false"])
    summary = Trainer.new(config, tmp_path / "run").run()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert summary["steps"] == 2 and [r["level"] for r in rows] == ["1", "1"]  # the sequential curriculum's start
    evals = read_csv(tmp_path / "run" / "eval.csv")
    assert {e["level"] for e in evals} == set("12345") and {int(e["n"]) for e in evals} == {2}


def test_prompts_longer_than_the_models_positions_fail_before_the_run(tiny_base_dir, data_dir, tmp_path, capsys):
    """The tiny base has 128 positions; GSM8K's prompts are longer. One line at the start, no run directory."""
    rc, err = cuma(capsys, "train", f"model.path={tiny_base_dir}", "env.id=CuMa-GSM8K-v0",
                   f"env.data_dir={data_dir}", "output.progress=false", "--out", tmp_path / "run")
    line = err.strip().splitlines()[-1]  # after transformers' own "Loading weights" bar
    assert rc == 2 and "Traceback" not in err and "Token indices sequence length" not in err
    assert line.startswith("cuma train: error: model.path: ") and "has 128 positions, but 256 of 256 training " \
        "prompts checked (CuMa-GSM8K-v0) plus rollout.max_new_tokens=48 need more" in line
    assert not (tmp_path / "run").exists()
