"""The embedded tiny base: config, architecture, warm-up determinism, cache, profile, `cuma base`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.tiny.config import TinyBaseConfig

QUICK = dict(steps=4, batch_size=8, warmup_steps=2)  # a build that takes well under a second


# ---------------------------------------------------------------- config
def test_config_validation_rejects_nonsense():
    for bad in [dict(steps=0), dict(hidden_size=130, num_heads=4), dict(lr=0.0), dict(levels=(1, 6)),
                dict(levels=()), dict(schedule="linear"), dict(template="default"), dict(seed=-1),
                dict(merges=("x",)), dict(batch_size=True)]:
        with pytest.raises(ValueError):
            TinyBaseConfig(**bad)


def test_config_key_is_stable_and_sensitive():
    a = TinyBaseConfig()
    assert a.key() == TinyBaseConfig().key() == TinyBaseConfig.from_dict(a.to_dict()).key()
    assert len({a.key(), a.replace(seed=1).key(), a.replace(steps=a.steps + 1).key(), a.replace(merges=()).key()}) == 4
    with pytest.raises(ValueError):
        TinyBaseConfig.from_dict({**a.to_dict(), "nonsense": 1})


# ---------------------------------------------------------------- architecture
def test_random_model_architecture(tiny_random_model):
    import torch

    from agents.tiny.model import count_parameters

    model, tokenizer = tiny_random_model
    cfg = model.config
    assert cfg.model_type == "qwen2" and cfg.tie_word_embeddings
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (128, 512, 2, 4)
    assert cfg.vocab_size == len(tokenizer) and cfg.max_position_embeddings >= 64
    assert cfg.eos_token_id == tokenizer.eos_token_id and cfg.pad_token_id == tokenizer.pad_token_id
    assert 0.4e6 < count_parameters(model) < 0.7e6
    assert "qwen" not in (model.name_or_path or "").lower()
    batch = tokenizer(["What is 1 + 2? Answer in \\boxed{}.", "What is 10 + 2?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))


def test_training_examples_mask_the_prompt():
    from agents.tiny.corpus import boxed as completion_text
    from agents.tiny.tokenizer import build_char_tokenizer
    from agents.tiny.training import IGNORE_INDEX, encode_examples

    tok = build_char_tokenizer()
    prompts = ["What is 1 + 2? Answer in \\boxed{}.", "What is 10 + 20? Answer in \\boxed{}."]
    ids, labels = encode_examples(tok, prompts, [completion_text("3"), completion_text("30")])
    for row, prompt, answer in zip(range(2), prompts, ["3", "30"]):
        n = len(tok(prompt)["input_ids"])
        target = tok(completion_text(answer))["input_ids"] + [tok.eos_token_id]
        assert (labels[row, :n] == IGNORE_INDEX).all()
        assert labels[row, n:n + len(target)].tolist() == target == ids[row, n:n + len(target)].tolist()
        assert (labels[row, n + len(target):] == IGNORE_INDEX).all()


# ---------------------------------------------------------------- determinism and cache
def test_same_config_and_seed_give_the_same_weights():
    from agents.tiny.model import weights_hash
    from agents.tiny.training import train_tiny_base

    config = TinyBaseConfig(**QUICK)
    first = weights_hash(train_tiny_base(config, progress=False).model)
    assert weights_hash(train_tiny_base(config, progress=False).model) == first
    assert weights_hash(train_tiny_base(config.replace(seed=1), progress=False).model) != first


def test_cache_builds_once_loads_with_auto_classes_and_rebuilds(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import agents.tiny.training
    from agents.tiny.cache import base_path, ensure_tiny_base, is_built, read_metadata
    from agents.tiny.model import weights_hash
    from agents.tiny.tokenizer import check_char_tokenizer

    config = TinyBaseConfig(**QUICK)
    monkeypatch.setenv("CUMA_CACHE_DIR", str(tmp_path))
    path = ensure_tiny_base(config, progress=False)
    assert path == base_path(config) and path.parent.parent == tmp_path and is_built(path)
    meta = read_metadata(path)
    assert meta["key"] == config.key() and meta["config"] == config.to_dict()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert weights_hash(model) == meta["weights_sha256"]
    assert tokenizer.eos_token_id == model.config.eos_token_id == model.generation_config.eos_token_id
    check_char_tokenizer(tokenizer)  # AutoTokenizer did not swap in Qwen2Tokenizer
    assert "qwen" not in model.name_or_path.lower()

    def boom(*args, **kwargs):
        raise AssertionError("a cached base must not be trained again")

    monkeypatch.setattr(agents.tiny.training, "train_tiny_base", boom)
    assert ensure_tiny_base(config, progress=False) == path
    with pytest.raises(AssertionError):
        ensure_tiny_base(config, progress=False, rebuild=True)
    assert is_built(path)  # a failed rebuild leaves the old entry in place
    monkeypatch.undo()
    assert ensure_tiny_base(config, cache_dir=tmp_path, progress=False, rebuild=True) == path
    assert read_metadata(path)["weights_sha256"] == meta["weights_sha256"]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_concurrent_builds_share_one_entry(tmp_path):
    code = ("import sys; from agents.tiny.cache import ensure_tiny_base, read_metadata; "
            "from agents.tiny.config import TinyBaseConfig; "
            f"p = ensure_tiny_base(TinyBaseConfig(**{QUICK!r}), cache_dir=sys.argv[1], progress=False); "
            "print(p, read_metadata(p)['weights_sha256'])")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    lines = {out.strip() for out, _ in outs}
    assert len(lines) == 1
    entries = list((tmp_path / "tiny-base").iterdir())
    assert sorted(p.name.endswith(".lock") for p in entries) == [False, True]


# ---------------------------------------------------------------- the default base
@pytest.mark.slow
def test_built_base_loads_and_left_padding_does_not_change_greedy_output(tiny_base_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agents.tiny.cache import read_metadata
    from agents.tiny.corpus import UNANSWERED_TEXT
    from agents.tiny.profile import generate_completions

    assert read_metadata(tiny_base_dir)["config"] == TinyBaseConfig().to_dict()
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    assert "qwen" not in model.name_or_path.lower()
    prompts = ["What is 3 + 4? Answer in \\boxed{}.", "What is 74 + 37 - 12? Answer in \\boxed{}.",
               "What is 51 - 68? Answer in \\boxed{}."]
    batched = generate_completions(model, tokenizer, prompts)
    alone = [generate_completions(model, tokenizer, [p])[0] for p in prompts]
    assert batched == alone
    assert batched[0][0] == "\\boxed{7}"  # level 1: the bare answer
    # level 5 and level 4: a bare answer or none (the base leaves a share of hard questions unanswered)
    assert all(texts[0].startswith("\\boxed{") or texts[0] == UNANSWERED_TEXT for texts in batched[1:])
    with torch.no_grad():
        greedy = model.generate(**tokenizer(prompts[:1], return_tensors="pt"), max_new_tokens=10, do_sample=False)
    assert greedy[0, -1].item() == tokenizer.eos_token_id  # stops by itself


@pytest.mark.slow
def test_built_base_is_weak_and_graded(tiny_base_dir):
    from agents.tiny.model import load_tiny_base
    from agents.tiny.profile import evaluate_base

    model, tokenizer = load_tiny_base(tiny_base_dir)
    report = evaluate_base(model, tokenizer, n_per_level=60, samples=8, temperature=0.6)
    greedy = {s.level: s.greedy for s in report.levels}
    assert greedy[1] >= 0.5, report.format_table()
    assert greedy[5] <= 0.3, report.format_table()
    assert greedy[1] - greedy[5] >= 0.35, report.format_table()
    assert sum(greedy[lv] for lv in (1, 2, 3)) > sum(greedy[lv] for lv in (3, 4, 5)), report.format_table()
    answered = {s.level: 1 - s.no_answer for s in report.levels}
    assert min(answered[1], answered[2]) >= 0.9 and answered[5] <= 0.5, report.format_table()  # silent when hard
    for stats in report.levels:
        assert 0 <= stats.masked <= 1 and sum(v["groups"] for v in stats.majority_by_cluster.values()) == stats.n


@pytest.mark.slow
def test_cuma_base_command_prints_and_writes_the_profile(tiny_base_dir, tmp_path, capsys):
    from agents.cli import main

    assert main(["base", "--n-per-level", "10", "--samples", "4", "--no-progress",
                 "--cache-dir", str(Path(tiny_base_dir).parent.parent), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert str(tiny_base_dir) in printed and "| 5 |" in printed
    assert "maj@4 - greedy: L1 " in printed and "majority labels beat greedy on" in printed
    data = json.loads((tmp_path / "out" / "base_profile.json").read_text())
    assert data["base_path"] == str(tiny_base_dir)
    assert f"weights sha256 {data['base']['weights_sha256'][:16]}" in printed  # which build, across CPUs
    assert [s["level"] for s in data["profile"]["levels"]] == [1, 2, 3, 4, 5]
    assert data["profile"]["samples"] == 4 and all(s["n"] == 10 for s in data["profile"]["levels"])


def test_majority_gain_is_maj_minus_greedy_and_the_verdict_names_the_levels():
    from agents.tiny.profile import BaseReport, LevelStats

    def stats(level, greedy, maj):
        return LevelStats(level=level, n=10, greedy=greedy, pass1=0.5, maj=maj, masked=0.0, unanimous=0.0,
                          no_answer=0.0)

    report = BaseReport(levels=[stats(1, 0.9, 0.9), stats(2, 0.5, 0.6), stats(3, 0.3, 0.2)], temperature=0.6,
                        samples=64, n_per_level=10, seed=0, split="test")
    gain = report.majority_gain()
    assert gain[1] == 0.0 and abs(gain[2] - 0.1) < 1e-12 and abs(gain[3] + 0.1) < 1e-12
    line = report.majority_verdict()
    assert line.startswith("maj@64 - greedy: L1 +0.00 L2 +0.10 L3 -0.10;") and "levels [2]" in line
    report.levels[1].maj = 0.51
    assert "on no level" in report.majority_verdict()



def test_cuma_base_profiles_the_validation_split_when_asked(tiny_base_dir, tmp_path, capsys):
    """Designing a base reads validation, never test: the profile says which split it read."""
    from agents.cli import main

    assert main(["base", "--split", "validation", "--n-per-level", "3", "--samples", "2", "--no-progress",
                 "--cache-dir", str(Path(tiny_base_dir).parent.parent), "--out", str(tmp_path / "v")]) == 0
    assert "held-out split 'validation'" in capsys.readouterr().out
    profile = json.loads((tmp_path / "v" / "base_profile.json").read_text())["profile"]
    assert profile["split"] == "validation"
    with pytest.raises(SystemExit) as exit_info:  # argparse: one line naming the choices
        main(["base", "--split", "dev"])
    assert exit_info.value.code == 2
