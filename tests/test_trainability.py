"""The trainability diagnostic (agents.experiments.trainability): features of a base's profile, the two
predictions, Spearman's rho with its interval, `cuma base` printing it, and `cuma base --study`."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_error, cuma

from agents.experiments.trainability import (
    diagnose,
    level_features,
    permutation_p,
    profile_levels,
    rank_correlation,
    spearman,
)

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "docs" / "results" / "study"


def _tiny_profile() -> dict:
    """A tiny-base profile (the shape of `BaseReport.to_dict()`), 8 samples, two levels with known answers.

    L1: 4 groups whose largest clusters hold 8, 6, 3 and 1 votes (majorities right, right, wrong, wrong);
    L2: 2 groups where no sample answers."""
    def level(lv, n, greedy, maj, no_answer, by):
        return {"level": lv, "n": n, "greedy": greedy, "pass1": 0.0, "maj": maj, "masked": 0.0, "unanimous": 0.0,
                "no_answer": no_answer,
                "majority_by_cluster": {str(c): {"groups": g, "majority_acc": a} for c, (g, a) in by.items()}}

    return {"samples": 8, "split": "validation", "temperature": 0.6, "levels": [
        level(1, 4, 0.25, 0.5, 0.1, {8: (1, 1.0), 6: (1, 1.0), 3: (1, 0.0), 1: (1, 0.0)}),
        level(2, 2, 0.0, 0.0, 1.0, {0: (2, 0.0)})]}


def test_features_and_predictions_of_a_hand_made_profile():
    strict = diagnose(_tiny_profile(), mask=0.75)  # the gated recipe: 6 of 8
    two = diagnose(_tiny_profile(), mask=2)        # paper CuMa
    l1 = strict["levels"]["L1"]
    assert strict["mask_votes"] == 6 and two["mask_votes"] == 2 and strict["samples"] == 8
    assert l1["maj_minus_greedy"] == 0.25 and l1["parsed"] == pytest.approx(0.9)
    assert l1["agreement"] == pytest.approx((8 + 6 + 3 + 1) / 32)
    assert l1["kept_2vote"] == 0.75 and l1["kept_6of8"] == 0.5 and l1["kept"] == 0.5
    assert l1["maj_acc_2vote"] == pytest.approx(2 / 3) and l1["maj_acc_6of8"] == 1.0
    assert l1["room"] == pytest.approx(0.5 * 0.25) and two["levels"]["L1"]["room"] == pytest.approx(0.75 * 0.25)
    # reward variance of the kept groups: a unanimous group teaches nothing, 6 of 8 gives 0.75 * 0.25
    assert l1["signal"] == pytest.approx(0.1875 / 4)
    assert two["levels"]["L1"]["signal"] == pytest.approx((0.1875 + 3 / 8 * 5 / 8) / 4)
    l2 = strict["levels"]["L2"]
    assert l2["parsed"] == 0.0 and l2["agreement"] == 0.0 and l2["kept_2vote"] == 0.0 and l2["maj_acc_6of8"] is None
    assert strict["prediction"] == pytest.approx((0.125 + 0.0) / 2)  # levels weigh equally
    assert strict["prediction_label_free"] == pytest.approx(0.1875 / 4 / 2)
    assert diagnose(_tiny_profile(), mask=1)["levels"]["L1"]["kept"] == 1.0  # no mask: any answer is kept
    assert diagnose(_tiny_profile(), levels=["L1"])["prediction"] == pytest.approx(0.125)


def test_a_model_profile_gives_the_same_features_as_the_tiny_one():
    """`cuma base --model`'s profile (rule x budget cells) is read the same way, under the rule and budget
    asked for (default: the fallback rule, the largest budget)."""
    from agents.model_profile import GroupProfile, ModelProfile, RuleStats

    tiny = _tiny_profile()["levels"][0]
    by = {int(c): v for c, v in tiny["majority_by_cluster"].items()}

    def stats(greedy):
        return RuleStats(n=4, greedy=greedy, pass1=0.3, maj=0.5, parsed=0.9, kept_2vote=0.75, kept_strict=0.5,
                         maj_acc_2vote=2 / 3, maj_acc_strict=1.0, majority_by_cluster=by)

    group = GroupProfile(name="L1", n=4, boxed=1.0, finished=1.0, mean_tokens=10.0,
                         cells={"boxed": {8: stats(0.0), 16: stats(0.1)}, "fallback": {8: stats(0.2), 16: stats(0.25)}})
    bench = copy.deepcopy(group)
    bench.name = "gsm8k"
    profile = ModelProfile(model="m", samples=8, temperature=0.6, budgets=[8, 16], template="default",
                           split="validation", groups=[group, bench])
    assert diagnose(profile)["levels"] == diagnose(_tiny_profile(), levels=["L1"])["levels"]  # benches left out
    assert diagnose(profile.to_dict(), rule="boxed", budget=8)["levels"]["L1"]["maj_minus_greedy"] == 0.5
    with pytest.raises(ValueError, match="budget must be one of"):
        diagnose(profile, budget=12)
    with pytest.raises(ValueError, match="rule must be one of"):
        diagnose(profile, rule="loose")


def test_features_agree_with_the_counts_of_a_real_model_profile(hub_like_model_dir):
    """On a real (random-weight) model's profile, the kept shares the diagnostic derives from the cluster sizes
    are the ones `profile_model` counted itself."""
    import torch

    from agents.model_profile import profile_model
    from agents.policy import load_model
    from cuma_env.arithmetic import ArithmeticSource

    model, tokenizer = load_model(str(hub_like_model_dir), torch.device("cpu"))
    source = ArithmeticSource(split="validation")
    groups = {"L1": [source.get(1, i) for i in range(2)], "L2": [source.get(2, i) for i in range(2)]}
    profile = profile_model(model, tokenizer, groups, model_name="hub-like", samples=8, budgets=(6,),
                            progress=False)
    json.dumps(profile.to_dict())
    for rule in ("boxed", "fallback"):
        features = diagnose(profile, rule=rule)["levels"]
        for g in profile.groups:
            s, f = g.cells[rule][6], features[g.name]
            assert f["kept_2vote"] == pytest.approx(s.kept_2vote) and f["kept_6of8"] == pytest.approx(s.kept_strict)
            assert f["maj_acc_2vote"] == (None if s.maj_acc_2vote is None else pytest.approx(s.maj_acc_2vote))
            assert f["agreement"] <= f["parsed"] + 1e-12 and f["maj"] == s.maj


def test_bad_profiles_are_refused_in_one_line():
    with pytest.raises(ValueError, match="a profile is"):
        diagnose({"levels": []})
    broken = _tiny_profile()
    broken["levels"][0]["n"] = 5  # the cluster sizes count 4 groups
    with pytest.raises(ValueError, match="count 4 groups, the level 5"):
        diagnose(broken)
    with pytest.raises(ValueError, match="no group 'L9'"):
        profile_levels(_tiny_profile(), levels=["L9"])
    with pytest.raises(ValueError, match="mask"):
        level_features(1, 0.0, 0.0, 1.0, {8: (1, 1.0)}, samples=8, mask=0)


def test_spearman_perfect_reversed_ties_and_monotone_invariance():
    x = np.arange(6.0)
    assert rank_correlation(x, 2 * x + 1)[0] == 1.0 and rank_correlation(x, -x)[0] == -1.0
    assert rank_correlation(x, np.exp(x))[0] == 1.0  # ranks only: any increasing map of the gains
    # ties share their mean rank: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): 4.5 / sqrt(4.5 * 5)
    assert spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(4.5 / math.sqrt(22.5))
    rho, low, high = rank_correlation([1, 1, 1, 1], [1, 2, 3, 4])  # no ranking on one side
    assert math.isnan(rho) and math.isnan(low) and math.isnan(high)


def test_fisher_interval_on_known_data():
    n = 10
    gains = np.array([1, 0, 3, 2, 4, 5, 6, 7, 8, 9], dtype=float)  # two adjacent swaps: sum d^2 = 4
    rho, low, high = rank_correlation(np.arange(n), gains)
    assert rho == pytest.approx(1 - 6 * 4 / (n * (n * n - 1)))
    half = 1.959964 * math.sqrt(1.06 / (n - 3))
    assert (low, high) == pytest.approx((math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)),
                                        abs=1e-5)
    # fewer worlds, the same rho: a wider interval; three worlds: no information
    _, low6, high6 = rank_correlation(np.arange(6), np.array([1, 0, 2, 3, 4, 5]))
    assert high6 - low6 > high - low
    assert rank_correlation([1, 2, 3], [1, 2, 3])[1:] == (-1.0, 1.0)
    # a perfect ranking of 6 worlds keeps an interval of non-zero width
    rho, low, high = rank_correlation(np.arange(6), np.arange(6))
    assert rho == 1.0 and 0 < low < high < 1
    with pytest.raises(ValueError, match="at least 3 finite numbers"):
        rank_correlation([1, 2], [1, 2])
    with pytest.raises(ValueError, match="at least 3 finite numbers"):
        rank_correlation([1, 2, 3], [1, 2, float("nan")])


def test_bootstrap_interval_and_permutation_p():
    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(scale=0.8, size=12)
    rho, low, high = rank_correlation(x, y, method="bootstrap", n_boot=500)
    assert -1 <= low <= rho <= high <= 1
    assert rank_correlation(x, y, method="bootstrap", n_boot=500) == (rho, low, high)  # seeded
    # exact: of the 120 orders of 5 gains, only the ranking and its reverse reach |rho| = 1
    assert permutation_p(np.arange(5), np.arange(5)) == pytest.approx(2 / 120)
    assert permutation_p(np.arange(12), np.arange(12)) < 0.001  # random orders beyond 8 worlds
    assert 0 < permutation_p(x, y) <= 1


def test_cuma_base_prints_the_diagnostic_for_the_tiny_base(tiny_base_dir, tmp_path, capsys):
    from agents.cli import main

    assert main(["base", "--split", "validation", "--n-per-level", "3", "--samples", "4", "--no-progress",
                 "--cache-dir", str(Path(tiny_base_dir).parent.parent), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "trainability (agents.experiments.trainability; split 'validation'):" in printed
    assert "| L5 |" in printed and "kept 6-of-8 (maj acc)" in printed
    assert "labelled: kept x (maj@4 - greedy) 2-vote" in printed and "label-free: kept reward variance" in printed
    saved = json.loads((tmp_path / "base_profile.json").read_text())["trainability"]
    assert saved["2"]["mask_votes"] == 2 and saved["0.75"]["mask_votes"] == 3 and len(saved["2"]["levels"]) == 5


def test_cuma_base_prints_the_diagnostic_for_a_model(hub_like_model_dir, tmp_path, capsys):
    from agents.cli import main

    assert main(["base", "--model", str(hub_like_model_dir), "--split", "validation", "--levels", "1,2",
                 "--n-per-level", "2", "--samples", "2", "--budgets", "4", "--threads", "1", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "split 'validation', rule boxed):" in printed and "split 'validation', rule fallback):" in printed
    assert printed.count("trainability prediction (mean over levels), label-free") == 2
    saved = json.loads((tmp_path / "base_profile.json").read_text())["trainability"]
    assert set(saved) == {"boxed", "fallback"} and list(saved["boxed"]["0.75"]["levels"]) == ["L1", "L2"]


def _study(tmp_path: Path) -> Path:
    """A finished-study directory with three worlds on the default base, each whose recipe sampled at another
    temperature (so their profiles differ), and a world whose base is not built."""
    cell = json.loads((STUDY / "cells" / "design" / "cuma_gated-s0" / "cell.json").read_text())
    study = json.loads((STUDY / "study.json").read_text())
    worlds, analysis = [], {}
    for name, temperature, gain in (("cold", 0.3, 0.05), ("warm", 1.0, 0.10), ("hot", 2.0, 0.02),
                                    ("unbuilt", 0.6, 0.3)):
        worlds.append({"name": name, "role": "held_out", "base": {"seed": 987654} if name == "unbuilt" else {}})
        spec = copy.deepcopy(cell)
        spec["config"]["rollout"]["temperature"] = temperature
        spec["config"]["env"]["min_votes"] = 2  # paper CuMa's mask: more kept groups that still disagree
        spec["config"]["env"]["levels"] = [3]  # the recipe's levels are the levels profiled
        (tmp_path / "cells" / name / "cuma_gated-s0").mkdir(parents=True)
        (tmp_path / "cells" / name / "cuma_gated-s0" / "cell.json").write_text(json.dumps(spec))
        analysis[name] = {"arms": {"base": {"mean": 0.4}, "cuma_gated": {"mean": 0.4 + gain}}}
    analysis["cold"]["contrasts"] = {"cuma_gated - base": {"estimate": 0.05}}
    (tmp_path / "study.json").write_text(json.dumps({"plan": {"worlds": worlds}, "bases": study["bases"],
                                                     "analysis": {"worlds": analysis}}))
    return tmp_path


def test_cuma_base_study_ranks_each_worlds_prediction_against_its_gain(tiny_base_dir, tmp_path, capsys):
    from agents.cli import main
    from agents.experiments.trainability_study import measured_gain, read_study
    from agents.tiny.cache import base_path, is_built
    from agents.tiny.config import TinyBaseConfig

    assert not is_built(base_path(TinyBaseConfig(seed=987654)))
    study = _study(tmp_path / "study")
    assert measured_gain(read_study(study), "warm", "cuma_gated") == pytest.approx(0.10)  # from the arms' means
    assert main(["base", "--study", str(study), "--n-per-level", "4", "--no-progress", "--out",
                 str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "### `cuma_gated - base`" in printed and "world unbuilt not profiled: its base is not built" in printed
    result = json.loads((tmp_path / "out" / "trainability.json").read_text())
    assert list(result["worlds"]) == ["cold", "warm", "hot"] and result["split"] == "validation"
    arms = [result["worlds"][w]["arms"]["cuma_gated"] for w in ("cold", "warm", "hot")]
    assert [a["gain"] for a in arms] == pytest.approx([0.05, 0.10, 0.02]) and {a["mask_votes"] for a in arms} == {2}
    labelled = result["correlations"]["cuma_gated"]["held_out"]["labelled"]
    free = result["correlations"]["cuma_gated"]["held_out"]["label-free"]
    predicted = [a["prediction_label_free"] for a in arms]
    assert len(set(predicted)) == 3 and all(list(a["levels"]) == ["L3"] for a in arms)
    assert free["n"] == 3 and free["rho"] == pytest.approx(float(spearman(np.array(predicted),
                                                                            np.array([0.05, 0.10, 0.02]))))
    assert labelled["n"] == 3 and (labelled["rho"] is None or (labelled["low"], labelled["high"]) == (-1, 1))
    md = (tmp_path / "out" / "trainability.md").read_text()
    assert md.startswith("# Trainability") and f"cuma base --study {study} --split validation" in md
    assert "Spearman rho [95% Fisher-z interval]" in md
    assert "cuma_gated" in result["correlations"] and result["correlations"]["cuma"]["all"]["labelled"]["n"] == 0


def test_cuma_base_study_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert_error(cuma(capsys, "base", "--study", tmp_path), "base", "study.json")
    assert_error(cuma(capsys, "base", "--study", STUDY, "--split", "test"), "base", "validation")
    assert_error(cuma(capsys, "base", "--study", STUDY, "--model", "smollm2-135m"), "base", "--model")
    assert_error(cuma(capsys, "base", "--build"), "base", "--study")
