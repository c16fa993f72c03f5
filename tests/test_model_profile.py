"""`cuma base --model`: a chat model's profile per answer rule and token budget (agents.model_profile)."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import assert_error, cuma

from agents.model_profile import RULES, profile_model, sample_tokens
from agents.policy import load_model, render_prompts
from cuma_env.arithmetic import ArithmeticSource


@pytest.fixture(scope="module")
def hub_like(hub_like_model_dir):
    return load_model(str(hub_like_model_dir), torch.device("cpu"))


def test_a_shorter_budget_is_the_prefix_of_the_longer_generation(hub_like):
    """What makes one generation serve every budget: the first b tokens of a sample at budget B > b are the
    sample a generation of b tokens draws from the same seed."""
    model, tokenizer = hub_like
    prompts = render_prompts(tokenizer, ["What is 2 + 3?", "What is 40 + 2?"])
    long = sample_tokens(model, tokenizer, prompts, samples=3, temperature=0.6, max_new_tokens=12, seed=5)
    short = sample_tokens(model, tokenizer, prompts, samples=3, temperature=0.6, max_new_tokens=5, seed=5)
    for group_long, group_short in zip(long, short):
        assert [ids[:5] for ids in group_long] == group_short


def test_profile_counts_are_consistent(hub_like):
    model, tokenizer = hub_like
    source = ArithmeticSource(split="validation")
    groups = {"L1": [source.get(1, i) for i in range(3)], "L2": [source.get(2, i) for i in range(2)]}
    profile = profile_model(model, tokenizer, groups, model_name="hub-like", samples=4, budgets=(8, 4),
                            progress=False)
    assert profile.budgets == [4, 8] and [g.name for g in profile.groups] == ["L1", "L2"]
    for group in profile.groups:
        assert set(group.cells) == set(RULES) and 0 <= group.boxed <= 1 and group.mean_tokens <= 8
        for rule in RULES:
            for stats in group.cells[rule].values():
                assert stats.n == group.n and 0 <= stats.kept_strict <= stats.kept_2vote <= 1
                assert 0 <= stats.pass1 <= stats.parsed <= 1
        for budget in profile.budgets:  # the fallback only ever adds answers
            assert group.cells["fallback"][budget].parsed >= group.cells["boxed"][budget].parsed
    table = profile.format_table()
    assert table.count("\n") == 1 + 2 * len(RULES) * 2 and "kept 6-of-8" in table  # head, rule, 8 rows
    json.dumps(profile.to_dict())


@pytest.mark.slow
def test_cuma_base_model_prints_and_writes_the_profile(smollm2_dir, tmp_path, capsys):
    rc, _ = cuma(capsys, "base", "--model", "smollm2-135m", "--split", "validation", "--levels", "1",
                 "--n-per-level", "2", "--samples", "2", "--budgets", "4,8", "--threads", "1", "--no-progress",
                 "--out", tmp_path)
    saved = json.loads((tmp_path / "base_profile.json").read_text())
    assert rc == 0 and saved["model"] == "smollm2-135m" and saved["profile"]["budgets"] == [4, 8]
    assert saved["profile"]["groups"][0]["name"] == "L1" and saved["profile"]["samples"] == 2


def test_cuma_base_model_refuses_bad_input_in_one_line(capsys, tmp_path):
    assert_error(cuma(capsys, "base", "--model", "smollm2-135m", "--levels", "7"), "base", "--levels")
    assert_error(cuma(capsys, "base", "--model", "smollm2-135m", "--template", "no field"), "base", "{problem}")
    assert_error(cuma(capsys, "base", "--model", str(tmp_path / "nowhere")), "base", "nowhere")


@pytest.mark.slow
def test_cuma_eval_boxed_only_reads_fewer_answers_from_cut_off_reasoning(smollm2_dir, tmp_path, capsys):
    """`cuma eval --boxed-only` reads answers as the smollm2 presets train: cut-off chain of thought (24 tokens)
    has numbers the fallback takes for answers, and rarely a marked one."""
    rates = {}
    for flag in ((), ("--boxed-only",)):
        out = tmp_path / ("boxed" if flag else "fallback")
        rc, err = cuma(capsys, "eval", "--model", "smollm2-135m", "--bench", "arith", "--split", "validation",
                       "--levels", "2", "--n", "4", "--samples", "2", "--max-new-tokens", "24", "--out", out, *flag)
        assert rc == 0, err
        (result,) = out.glob("eval-*.json")
        rates[bool(flag)] = json.loads(result.read_text())["levels"]["2"]["parse_rate"]
    assert rates[True] < rates[False]
