"""`cuma study`: worlds, the arm table, the grid, the analysis, and (slow) the quick study end to end, its
resumption after a kill, and a world that is in no shipped file.

The analysis tests use synthetic per-problem results (no training); the end-to-end tests train one arm for
4 steps on 10 held-out problems per level: they check plumbing, never accuracy.
"""

from __future__ import annotations

import json
import os

import pytest
from study_fakes import fake_cell_results

from agents.experiments.reproduce import Budget
from agents.experiments.study import StudyPlan, quick_plan, study_budget
from agents.experiments.study_arms import ARM_ORDER, ARMS, CONTRASTS, STUDY1_ARMS
from agents.experiments.study_cells import Cell, cell_config, count_samples
from agents.experiments.worlds import SHIPPED, WorldError, load_worlds, parse_worlds
from agents.tiny.config import TinyBaseConfig


def test_the_shipped_worlds_are_the_published_design_world_and_held_out_perturbations():
    from agents.tiny.published import published_weights

    worlds = load_worlds()
    design = [w for w in worlds if w.role == "design"]
    held_out = [w for w in worlds if w.role == "held_out"]
    assert len(design) == 1 and design[0].base_config() == TinyBaseConfig() and design[0].is_default_base
    assert published_weights(design[0].base_config()) is not None          # installs, never trains
    assert len(held_out) >= 4 and design[0].seeds == 5 and all(w.seeds == 3 for w in held_out)
    keys = {w.base_config().key() for w in worlds}
    assert len(keys) == len(worlds)                                          # every world is another base
    changed = {k for w in held_out for k in w.base}
    assert {"seed", "reasoning_share", "unanswered_share"} <= changed
    assert any(not w.read_before for w in held_out) and any(w.read_before for w in held_out)
    assert "experiments/study_worlds/default.yaml" in SHIPPED.as_posix()


@pytest.mark.parametrize("entry,message", [
    ({"name": "w", "role": "held_out", "reasoning_shares": 0.5}, "did you mean 'reasoning_share'"),
    ({"name": "w", "role": "heldout"}, "did you mean 'held_out'"),
    ({"name": "a world", "role": "held_out"}, "name must be"),
    ({"name": "w", "role": "held_out", "reasoning_share": 2}, "reasoning_share must be in [0, 1]"),
    ({"name": "w", "role": "held_out", "unanswered_share": [0, 0.1]}, "unanswered_share must be 5 shares"),
    ({"name": "w", "role": "held_out", "seeds": 0}, "seeds must be a positive int"),
])
def test_a_bad_world_is_one_line_naming_the_fix(entry, message):
    with pytest.raises(WorldError) as info:
        parse_worlds([entry], "w.yaml")
    assert message in str(info.value) and "\n" not in str(info.value) and str(info.value).startswith("w.yaml")


def test_a_world_file_may_be_json_and_names_must_be_unique(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"worlds": [{"name": "wide", "role": "held_out", "hidden_size": 256, "seed": 4}]}))
    (world,) = load_worlds(path)
    assert world.base_config() == TinyBaseConfig(hidden_size=256, seed=4) and world.seeds == 3
    with pytest.raises(WorldError, match="unique"):
        parse_worlds([{"name": "a", "role": "held_out"}, {"name": "a", "role": "held_out", "seed": 1}])
    with pytest.raises(WorldError, match="at most one world has role 'design'"):
        parse_worlds([{"name": "a", "role": "design"}, {"name": "b", "role": "design", "seed": 1}])
    with pytest.raises(WorldError, match="cannot read"):
        load_worlds(tmp_path / "missing.yaml")


def test_every_study_arm_is_its_reproduce_preset_plus_the_rule_it_names():
    budget = study_budget()
    world = load_worlds()[0]
    config = {a: cell_config(Cell(world, a, 1), budget, "tiny") for a in ARM_ORDER}
    assert config["ttrl"].env.empty_votes and not config["ttrl_novote"].env.empty_votes
    assert config["ttrl"].env.reward == config["ttrl_novote"].env.reward == "majority"
    assert config["cuma_gated_vote"].env.empty_votes and not config["cuma_gated"].env.empty_votes
    assert config["cuma_gated_vote"].env.min_votes == config["cuma_gated"].env.min_votes == 0.75
    uniform = config["gated_mask_uniform"]
    assert (uniform.curriculum.schedule, uniform.curriculum.probe, uniform.env.min_votes) == ("uniform", False, 0.75)
    two = config["gated_2vote"]
    assert (two.curriculum.schedule, two.curriculum.probe, two.env.min_votes) == ("agreement_gated", True, 2)
    assert config["gated_noprobe"].curriculum.schedule == "agreement_gated"
    assert not config["gated_noprobe"].curriculum.probe
    for arm, c in config.items():  # the same budget and batch for every arm
        assert (c.seed, c.train.steps, c.rollout.prompts_per_step, c.rollout.group_size) == (1, 120, 16, 8), arm
        assert c.eval.n_per_level == 400 and c.model.path == "tiny"
    assert [a for a in ARM_ORDER if ARMS[a].labels != "none"] == ["oracle"]
    assert all(c.a in ARMS and c.b in ARMS for c in CONTRASTS)


def test_a_world_base_and_the_users_overrides_reach_every_cell(tmp_path):
    (world,) = parse_worlds([{"name": "w", "role": "held_out", "seed": 3}])
    budget = study_budget(overrides=["rollout.prompts_per_step=4", "env.empty_votes=false"])
    config = cell_config(Cell(world, "cuma_gated_vote", 0), budget, str(tmp_path))
    assert config.model.path == str(tmp_path) and config.rollout.prompts_per_step == 4
    assert not config.env.empty_votes                    # the user's override wins over the arm's


def test_the_grid_runs_the_decomposition_in_the_design_world_only():
    worlds = tuple(load_worlds())
    plan = StudyPlan(worlds, ARM_ORDER, study_budget())
    cells = plan.cells()
    design_only = {a for a in ARM_ORDER if ARMS[a].design_only}
    assert design_only == {"gated_mask_uniform", "gated_2vote", "gated_noprobe"}
    assert {c.world.role for c in cells if c.arm in design_only} == {"design"}
    assert sum(c.arm == "base" for c in cells) == len(worlds)  # greedy: one base evaluation per world
    design = [c for c in cells if c.world.role == "design" and c.arm == "cuma_gated"]
    held = [c for c in cells if c.world.name == "seed1" and c.arm == "cuma_gated"]
    assert [c.seed for c in design] == [0, 1, 2, 3, 4] and [c.seed for c in held] == [0, 1, 2]
    assert len({c.label for c in cells}) == len(cells)
    quick = quick_plan(list(worlds))
    assert [c.label for c in quick.cells()] == ["design/base", "design/cuma_gated-s0"]
    assert quick.budget.steps <= 8 and quick.budget.eval_n_per_level <= 20
    with pytest.raises(ValueError, match="unknown arm"):
        StudyPlan(worlds, ("base", "ttrl_nope"), study_budget())
    assert StudyPlan(worlds, ("base",), study_budget(), split="validation").split == "validation"
    with pytest.raises(ValueError, match="'train' is not a held-out split"):
        StudyPlan(worlds, ("base",), study_budget(), split="train")


# --- the analysis on synthetic per-problem results -------------------------------------------------
def test_the_analysis_pairs_arms_per_world_and_pools_the_held_out_worlds(tmp_path):
    from agents.experiments.study_analysis import analyse
    from agents.experiments.study_report import format_markdown, plot_forest

    worlds = tuple(load_worlds())[:4]
    plan = StudyPlan(worlds, ("base", "ttrl", "ttrl_novote", "cuma_gated"), study_budget(), n_boot=500)
    gains = {"base": 0.0, "ttrl": 0.0, "ttrl_novote": 0.05, "cuma_gated": 0.3}
    analysis = analyse(plan.worlds, fake_cell_results(plan, gains), n_boot=500)
    design = analysis["worlds"]["design"]
    gated, base = design["arms"]["cuma_gated"], design["arms"]["base"]
    assert gated["n_seeds"] == 5 and base["n_seeds"] == 1 and gated["samples"]["train"] == 15360
    assert design["contrasts"]["cuma_gated - base"]["estimate"] == pytest.approx(gated["mean"] - base["mean"],
                                                                                 abs=1e-4)
    pooled = analysis["pooled"]["held_out"]
    assert pooled["cuma_gated - base"]["n_worlds"] == 3 and pooled["cuma_gated - base"]["low"] > 0.1
    assert "cuma_gated - base" in analysis["pooled"]["held_out_unread"]
    verdicts = {h["hypothesis"]: h["verdict"] for h in analysis["hypotheses"]}
    assert verdicts == {"H1": "supported", "H2": "supported"}   # the arms of H3-H6 did not run
    assert analysis["headline"].startswith("made, robust")
    study = {"protocol": {"file": "docs/study-protocol.md", "commit": "abc", "modified_since": False},
             "plan": plan.to_dict(), "analysis": analysis, "bases": {}}
    text = format_markdown(study)
    assert "at commit `abc`" in text and "| H1 | `cuma_gated - base`" in text and "supported" in text
    assert "**equal steps**" in text and "## World `seed1` (held_out)" in text and "pooled held-out" in text
    png = plot_forest(tmp_path / "forest.png", analysis).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_the_protocol_commit_is_read_from_git_or_unknown(tmp_path):
    from agents.experiments.study_report import protocol_commit

    here = protocol_commit()
    assert here["file"] == "docs/study-protocol.md" and (here["commit"] == "unknown" or len(here["commit"]) == 40)
    assert protocol_commit(root=tmp_path)["commit"] == "unknown"


def test_samples_count_training_groups_and_probe_groups(tmp_path):
    world = load_worlds()[0]
    config = cell_config(Cell(world, "cuma_gated", 0), Budget(steps=3), "tiny")
    (tmp_path / "metrics.csv").write_text("step,probes\n1,0\n2,1\n3,2\n")
    assert count_samples(tmp_path, config) == {"steps": 3, "train": 3 * 16 * 8, "probe": 2 * 8 * 8,
                                               "total": 3 * 128 + 128}
    assert count_samples(None, config)["total"] == 0


def test_the_command_rejects_bad_arguments_before_anything_runs(tmp_path, capsys):
    from agents.commands.study import main

    bad = tmp_path / "w.yaml"
    bad.write_text("- {name: w, role: held_out, sed: 1}\n")
    assert main(["--worlds", str(bad), "--out", str(tmp_path / "a")]) == 2
    assert "did you mean 'seed'" in capsys.readouterr().err
    assert main(["--arms", "base,nope", "--out", str(tmp_path / "b")]) == 2
    assert "unknown arm" in capsys.readouterr().err
    assert main(["--quick", "--out", str(tmp_path / "c"), "train.nope=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert main(["--split", "train", "--out", str(tmp_path / "d")]) == 2
    assert "not a held-out split of the arith source; it has validation, test" in capsys.readouterr().err
    assert main(["--quick", "--out", str(tmp_path / "e"), "model.device=cuda:7"]) == 2
    assert "cuda" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["--quick", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abcde")


def test_a_dry_run_lists_the_grid_and_trains_nothing(tmp_path, capsys):
    from agents.commands.study import main

    assert main(["--dry-run", "--out", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    cells = StudyPlan(tuple(load_worlds()), STUDY1_ARMS, study_budget()).cells()
    design = sum(c.world.role == "design" for c in cells)
    assert f"{len(cells)} cells" in out and f"design (design): {design} cells" in out and "(published)" in out
    assert "seed1 (held_out)" in out and "15360 training completions" in out
    assert not (tmp_path / "x").exists()


def test_the_committed_study_cells_are_still_finished_cells_of_the_shipped_arms():
    """docs/results/study: its design world (model path `tiny`, every arm) is recognised cell by cell."""
    from pathlib import Path

    from agents.experiments.study import different_cells

    root = Path(__file__).resolve().parents[1] / "docs" / "results" / "study"
    study = json.loads((root / "study.json").read_text())
    design = tuple(w for w in load_worlds() if w.role == "design")
    plan = StudyPlan(design, tuple(study["plan"]["arms"]), study_budget(), study["plan"]["split"])
    assert len(plan.cells()) == 51 and different_cells(root, plan, {"design": "tiny"}) == []


# --- end to end (slow) -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_study(tiny_base_dir, tmp_path_factory):
    from agents.commands.study import main

    out = tmp_path_factory.mktemp("study")
    assert main(["--quick", "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_the_quick_study_writes_json_markdown_forest_and_per_problem_cells(quick_study):
    study = json.loads((quick_study / "study.json").read_text())
    assert [c["cell"] for c in study["cells"]] == ["design/base", "design/cuma_gated-s0"]
    assert study["bases"]["design"]["source"] == "published"
    cell = json.loads((quick_study / "cells" / "design" / "cuma_gated-s0" / "per_problem.json").read_text())
    assert cell["matches_trainer_eval"] is True      # the per-problem greedy pass = the trainer's final greedy
    assert [len(v["correct"]) for v in cell["levels"].values()] == [10] * 5
    assert cell["samples"]["train"] == 4 * 16 * 8 and cell["samples"]["total"] >= cell["samples"]["train"]
    assert (quick_study / cell["run_dir"] / "summary.json").is_file()
    base = json.loads((quick_study / "cells" / "design" / "base" / "per_problem.json").read_text())
    assert base["samples"]["total"] == 0 and base["run_dir"] is None
    ids = [v["ids"] for v in base["levels"].values()]
    assert ids == [v["ids"] for v in cell["levels"].values()]  # paired: the same problems
    contrast = study["analysis"]["worlds"]["design"]["contrasts"]["cuma_gated - base"]
    assert contrast["low"] <= contrast["estimate"] <= contrast["high"]
    assert "| cuma_gated | 1 |" in (quick_study / "study.md").read_text()
    assert (quick_study / "forest.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_killed_study_skips_finished_cells_and_resumes_the_unfinished_one(quick_study, capsys):
    from agents.checkpoint import list_checkpoints
    from agents.commands.study import main

    base = quick_study / "cells" / "design" / "base" / "per_problem.json"
    cell = quick_study / "cells" / "design" / "cuma_gated-s0"
    first = json.loads((cell / "per_problem.json").read_text())
    run = quick_study / first["run_dir"]
    base_mtime = base.stat().st_mtime_ns
    # killed after the checkpoint at step 2: no result, no summary, no final model, no later checkpoint
    (cell / "per_problem.json").unlink()
    (run / "summary.json").unlink()
    for step, path in list_checkpoints(run):
        if step > 2:
            path.unlink()
    (kept,) = [(step, path, path.stat().st_mtime_ns) for step, path in list_checkpoints(run)]
    for f in (run / "model").iterdir():
        f.unlink()
    (run / "model").rmdir()
    assert main(["--quick", "--out", str(quick_study), "--no-progress"]) == 0
    again = json.loads((cell / "per_problem.json").read_text())
    assert base.stat().st_mtime_ns == base_mtime                       # the finished cell was skipped
    assert again["samples"] == first["samples"] and again["levels"] == first["levels"]  # resumed, same result
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]
    assert kept[0] == 2 and kept[1].stat().st_mtime_ns == kept[2]  # resumed from it (a fresh run deletes it)
    mtime = (cell / "per_problem.json").stat().st_mtime_ns
    assert main(["--quick", "--out", str(quick_study), "--no-progress"]) == 0  # all finished: nothing runs
    assert (cell / "per_problem.json").stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert main(["--quick", "--steps", "3", "--out", str(quick_study), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cuma_gated-s0 holds a cell with a different configuration" in err  # the base cell is still the same


def _killed_worker(*args):
    """A cell process that the kernel kills (SIGKILL, as its OOM killer does): no Python error reaches the pool."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_cell_process_is_one_line_and_the_finished_cells_stay(quick_study, tmp_path, capsys, monkeypatch):
    import shutil

    import agents.experiments.study as study_module
    from agents.commands.study import main

    out = tmp_path / "study"
    shutil.copytree(quick_study, out)
    (out / "cells" / "design" / "cuma_gated-s0" / "per_problem.json").unlink()  # to be run again
    base = out / "cells" / "design" / "base" / "per_problem.json"
    kept = base.read_bytes()
    monkeypatch.setattr(study_module, "worker", _killed_worker)
    capsys.readouterr()
    assert main(["--quick", "--out", str(out), "--no-progress", "--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert "a cell's process was killed" in err and "Run the same command again" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert base.read_bytes() == kept


@pytest.mark.slow
def test_finished_cells_carry_to_another_study_directory_and_are_not_run_again(quick_study, tmp_path, capsys):
    """One study over several machines or sessions: export the finished cells (results only), merge them into
    another directory, and the study there runs nothing and reports the same."""
    from agents.commands.study import main

    carry, other = tmp_path / "carry", tmp_path / "other"
    assert main(["--out", str(quick_study), "--export", str(carry)]) == 0
    assert sorted(str(p.relative_to(carry)) for p in carry.rglob("*") if p.is_file()) == [
        "cells/design/base/cell.json", "cells/design/base/per_problem.json",
        "cells/design/cuma_gated-s0/cell.json", "cells/design/cuma_gated-s0/per_problem.json"]
    capsys.readouterr()
    assert main(["--quick", "--out", str(other), "--merge", str(carry), "--no-progress"]) == 0
    assert "merged 2 finished cells" in capsys.readouterr().out
    assert not list(other.glob("cells/design/cuma_gated-s0/*/metrics.csv"))  # nothing trained here
    here, there = (json.loads((d / "study.json").read_text()) for d in (quick_study, other))
    assert [c["per_level"] for c in here["cells"]] == [c["per_level"] for c in there["cells"]]
    assert here["analysis"]["worlds"] == there["analysis"]["worlds"]
    assert main(["--out", str(other), "--compare", str(quick_study)]) == 0
    assert "2 cells identical problem by problem, 0 differ" in capsys.readouterr().out
    result = carry / "cells" / "design" / "cuma_gated-s0" / "per_problem.json"  # a cell run another way
    changed = json.loads(result.read_text())
    changed["spec"]["seed"] = 99
    result.write_text(json.dumps(changed))
    assert main(["--quick", "--out", str(other), "--merge", str(carry), "--no-progress"]) == 2
    assert "finished in both" in capsys.readouterr().err
    assert main(["--out", str(carry), "--compare", str(other)]) == 1
    assert "differs: design/cuma_gated-s0" in capsys.readouterr().out
    assert main(["--export", str(carry)]) == 2 and "give --out DIR" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "empty"), "--compare", str(other)]) == 2
    assert "no finished cell in common" in capsys.readouterr().err
    (other / "cells" / "design" / "base" / "per_problem.json").unlink()  # a partial re-run: one cell of two
    assert main(["--out", str(other), "--compare", str(quick_study)]) == 0
    out = capsys.readouterr().out
    assert "1 cells identical problem by problem, 0 differ" in out
    assert f"not compared: 0 cells finished only in {other}, 1 only in {quick_study}" in out


@pytest.mark.slow
def test_a_world_in_no_shipped_file_is_built_by_the_base_cache_and_evaluated(tmp_path, monkeypatch, capsys):
    from agents.commands.study import main
    from agents.tiny.cache import base_path, read_metadata

    monkeypatch.setenv("CUMA_CACHE_DIR", str(tmp_path / "cache"))
    worlds = tmp_path / "mine.yaml"
    worlds.write_text("worlds:\n  - {name: mine, role: held_out, seed: 7, steps: 3, warmup_steps: 1, "
                      "reasoning_share: 0.3}\n")
    assert main(["--worlds", str(worlds), "--dry-run"]) == 0
    assert "mine (held_out)" in capsys.readouterr().out and not (tmp_path / "cache").exists()
    out = tmp_path / "out"
    assert main(["--worlds", str(worlds), "--arms", "base", "--n-per-level", "3", "--out", str(out),
                 "--no-progress"]) == 0
    config = TinyBaseConfig(seed=7, steps=3, warmup_steps=1, reasoning_share=0.3)
    assert read_metadata(base_path(config))["source"] == "trained"        # `cuma base`'s cache, this config
    study = json.loads((out / "study.json").read_text())
    assert study["plan"]["worlds"][0]["base_key"] == config.key()
    assert study["bases"]["mine"]["path"] == str(base_path(config))
    spec = json.loads((out / "cells" / "mine" / "base" / "cell.json").read_text())
    assert spec["config"]["model"]["path"] == str(base_path(config)) and os.path.isdir(spec["config"]["model"]["path"])
