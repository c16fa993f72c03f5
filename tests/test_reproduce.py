"""`cuma reproduce`: arm configs, the no-curated pool, results.json schema, the table and the PNG.

The end-to-end run trains three arms for 3 steps on the tiny base (4 prompts per step, 8 held-out problems
per level); it checks outputs and plumbing, never accuracy or timing.
"""

from __future__ import annotations

import json

import pytest

from agents.experiments.report import aggregate, format_table, goal_checks
from agents.experiments.reproduce import (
    METHOD_ORDER,
    METHODS,
    NOCURATED_POOL_SIZE,
    Budget,
    RunRecord,
    _split_evenly,
    method_config,
    quick_budget,
)
from agents.tiny.cache import read_metadata

SMALL = ("rollout.prompts_per_step=4", "eval.n_per_level=8", "eval.samples=2")
KEYS = {"mean_acc", "per_level", "pass1_t06", "collapse", "wall_s"}


def test_every_paper_arm_is_a_method_with_a_valid_config():
    assert set(METHOD_ORDER) >= {"base", "ttrl", "intuitor", "oracle", "cuma", "cuma_nomask", "cuma_nocurriculum",
                                 "cuma_gated", "cuma_nocurated"}
    budget = Budget(steps=50, eval_every=25)
    for method in METHOD_ORDER:
        config = method_config(method, 2, budget)
        assert config.seed == 2 and config.train.steps == 50 and config.eval.every == 25
        assert config.name == method
    assert [m for m in METHOD_ORDER if METHODS[m].labels != "none"] == ["oracle"]
    assert method_config("oracle", 0, budget).env.reward == "ground_truth"
    assert method_config("cuma_gated", 0, budget).curriculum.schedule == "agreement_gated"


def test_sequential_stages_follow_the_budget_and_the_pool():
    budget = Budget(steps=50)
    groups = 50 * 16
    balanced = method_config("cuma", 0, budget).curriculum.options["steps_per_level"]
    skewed = method_config("cuma_nocurated", 0, budget).curriculum.options["steps_per_level"]
    assert sum(balanced) == sum(skewed) == groups
    assert max(balanced) - min(balanced) <= 1                     # equal stages on the balanced split
    assert skewed == sorted(skewed) and skewed[0] < groups * 0.1  # MATH's shares: few easy problems
    assert method_config("cuma_nomask", 0, budget).curriculum.options["steps_per_level"] == balanced
    assert _split_evenly(7, [1, 1, 1]) == [3, 2, 2] and _split_evenly(3, [100, 1, 1]) == [1, 1, 1]


def test_the_nocurated_pool_is_config_and_skewed():
    from agents.train_pool import training_source

    config = method_config("cuma_nocurated", 0, Budget(steps=10))
    assert (config.env.pool.kind, config.env.pool.size) == ("skewed", NOCURATED_POOL_SIZE)
    assert all(method_config(m, 0, Budget(steps=10)).env.pool.kind == "split"
               for m in METHOD_ORDER if m != "cuma_nocurated")
    pool = training_source(config.env)
    sizes = [pool.size(lv) for lv in (1, 2, 3, 4, 5)]
    assert sum(sizes) == NOCURATED_POOL_SIZE and sizes == sorted(sizes) and sizes[0] < sizes[-1] / 3
    assert all(p.meta["split"] == "train" for p in pool.problems())


def _record(method, seed, acc, collapse=0.05):
    return RunRecord(method=method, seed=seed, mean_acc=acc, per_level=[acc] * 5, pass1_t06=acc - 0.1,
                     collapse=collapse, wall_s=10.0, peak_mean_acc=acc + 0.01, peak_per_level=[acc + 0.01] * 5,
                     curve=[[0.0, 0.4], [10.0, acc]])


def test_aggregate_means_over_seeds_and_judges_the_targets():
    records = [_record("base", s, 0.4) for s in (0, 1)] + [_record("ttrl", 0, 0.2, collapse=0.9),
                                                           _record("ttrl", 1, 0.3)]
    records += [_record("oracle", s, 0.45) for s in (0, 1)] + [_record("cuma_gated", s, 0.43 + s / 100)
                                                               for s in (0, 1)]
    results = aggregate(records)
    assert list(results) == ["base", "ttrl", "oracle", "cuma_gated"]
    ttrl = results["ttrl"]
    assert KEYS <= set(ttrl) and ttrl["mean_acc"] == pytest.approx(0.25) and ttrl["collapse"] == pytest.approx(0.475)
    assert [s["seed"] for s in ttrl["seeds"]] == [0, 1] and ttrl["mean_acc_std"] > 0
    assert all(ok for _, ok in goal_checks(results))
    short = aggregate([_record("base", 0, 0.4), _record("ttrl", 0, 0.3), _record("cuma_gated", 0, 0.42)])
    assert [ok for _, ok in goal_checks(short)] == [True, None, True, False]  # +0.02 < the 0.03 goal
    table = format_table(results)
    assert table.count("\n| ") >= 5 and "ground truth" in table and "+0.035" in table
    single = aggregate([_record("base", 0, 0.4)])
    assert "seeds" not in single["base"] and single["base"]["n_seeds"] == 1


@pytest.fixture(scope="module")
def small_reproduce(tiny_base_dir, tmp_path_factory):
    from agents.experiments.reproduce import reproduce

    out = tmp_path_factory.mktemp("reproduce")
    budget = quick_budget(3, overrides=[f"model.path={tiny_base_dir}", *SMALL])
    lines: list[str] = []
    results = reproduce(out, methods=["cuma_nocurated", "base", "ttrl"], seeds=[0], budget=budget, log=lines.append)
    return out, results, budget, lines


@pytest.mark.slow
def test_a_tiny_reproduce_writes_results_table_and_png(small_reproduce):
    out, results, _, lines = small_reproduce
    saved = json.loads((out / "results.json").read_text())
    assert list(saved) == ["base", "ttrl", "cuma_nocurated"] == list(results)
    for method, entry in saved.items():
        assert KEYS <= set(entry), method
        assert len(entry["per_level"]) == 5 and all(0.0 <= v <= 1.0 for v in entry["per_level"])
        assert entry["mean_acc"] == pytest.approx(sum(entry["per_level"]) / 5, abs=1e-3)
        assert 0.0 <= entry["pass1_t06"] <= 1.0 and 0.0 <= entry["collapse"] <= 1.0 and entry["wall_s"] > 0
        assert entry["peak_mean_acc"] >= entry["mean_acc"] - 1e-9
    table = (out / "results.md").read_text()
    for method in saved:
        assert f"| {method} |" in table
    assert "Targets" in table and "L5" in table
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    info = json.loads((out / "run_info.json").read_text())
    assert info["budget"]["steps"] == 3 and len(info["records"]) == 3
    sha = read_metadata(info["base"]["path"])["weights_sha256"]  # which base: its build depends on the CPU
    assert info["base"]["weights_sha256"] == sha and f"weights sha256 `{sha[:16]}`" in table
    assert info["base"]["source"] == "published" and "(the published weights, the same on every machine)" in table
    run = out / "runs" / "cuma_nocurated-s0"
    assert "arith-math-skewed" in (run / "pool.txt").read_text()
    assert "held-out before" in (run / "train.log").read_text()
    # every trained arm starts from the base: its step-0 evaluation is the base's (greedy is deterministic)
    first = [r for r in info["records"] if r["method"] == "ttrl"][0]["curve"][0]
    assert first == [0.0, pytest.approx(saved["base"]["mean_acc"])]
    assert any("cuma_nocurated seed 0" in line for line in lines)


@pytest.mark.slow
def test_a_second_call_reuses_finished_arms(small_reproduce):
    from agents.experiments.reproduce import reproduce

    out, results, budget, _ = small_reproduce
    mtime = (out / "runs" / "ttrl-s0" / "summary.json").stat().st_mtime
    again = reproduce(out, methods=["ttrl"], seeds=[0], budget=budget, log=lambda _: None)
    assert again["ttrl"]["mean_acc"] == results["ttrl"]["mean_acc"]
    assert (out / "runs" / "ttrl-s0" / "summary.json").stat().st_mtime == mtime


def test_the_header_says_when_the_arms_were_reused_from_an_earlier_invocation():
    from agents.experiments.report import format_table

    results = {"base": {"mean_acc": 0.4, "per_level": [0.4] * 5, "peak_per_level": [0.4] * 5, "peak_mean_acc": 0.4,
                        "pass1_t06": 0.3, "collapse": 0.05, "wall_s": 3.0, "labels": None, "n_seeds": 1}}
    info = {"seeds": [0], "budget": {"steps": 80, "eval_every": 40}, "total_wall_s": 8.0,
            "records": [{"wall_s": 3.0}, {"wall_s": 160.0}]}
    assert "total wall time 8 s for this invocation, which reused finished arms (theirs add up to 163 s)." \
        in format_table(results, info)
    info = {**info, "total_wall_s": 170.0}
    assert "total wall time 170 s." in format_table(results, info)


def test_the_command_rejects_bad_arguments_before_training(tmp_path, capsys):
    from agents.commands.reproduce import main

    assert main(["--methods", "ttrl,nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["--quick", "--out", str(tmp_path / "y"), "train.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
