"""A study world that is a pretrained model: its arms train from that model's presets, not the tiny ones."""

from __future__ import annotations

import pytest

from agents.experiments.reproduce import Budget
from agents.experiments.study_arms import ARMS
from agents.experiments.study_cells import Cell, cell_config, cell_spec
from agents.experiments.worlds import SHIPPED, WorldError, load_worlds, parse_world

SMOLLM2_WORLDS = SHIPPED.parent / "smollm2.yaml"


def test_the_shipped_model_world_parses():
    (world,) = load_worlds(SMOLLM2_WORLDS)
    assert world.model == "smollm2-135m" and world.presets == "smollm2" and not world.is_default_base
    assert world.base_key == "model:smollm2-135m" and world.to_dict()["presets"] == "smollm2"


@pytest.mark.parametrize("arm, preset_lr", [("ttrl", 3e-6), ("cuma", 3e-6), ("cuma_gated", 3e-6), ("oracle", 3e-6)])
def test_model_world_arms_use_its_presets_and_not_the_tiny_tuned_lr(arm, preset_lr):
    (world,) = load_worlds(SMOLLM2_WORLDS)
    budget = Budget(steps=4, eval_every=0)
    config = cell_config(Cell(world, arm, 0), budget, world.model)
    assert config.model.path == "smollm2-135m" and config.env.levels == [1, 2]
    assert config.train.lr == preset_lr  # the tiny stage-1 lr (3e-5) stays in tiny worlds
    assert config.env.last_number_fallback is False
    tiny = load_worlds()[0]
    assert cell_config(Cell(tiny, arm, 0), budget, "tiny").train.lr == (1e-5 if arm == "cuma" else 3e-5)
    assert ARMS[arm].method in cell_spec(Cell(world, arm, 0), budget, world.model, "test")["method"]


def test_sequential_stages_follow_the_model_presets_levels():
    (world,) = load_worlds(SMOLLM2_WORLDS)
    config = cell_config(Cell(world, "cuma", 0), Budget(steps=30, eval_every=0), world.model)
    assert config.curriculum.schedule == "sequential"
    assert sum(config.curriculum.options["steps_per_level"]) == 30 * config.rollout.prompts_per_step
    assert len(config.curriculum.options["steps_per_level"]) == 2


@pytest.mark.parametrize("entry, message", [
    ({"name": "w", "role": "held_out", "model": "smollm2-135m", "seed": 1}, "takes no tiny-base fields"),
    ({"name": "w", "role": "held_out", "model": "/some/dir"}, "presets"),
    ({"name": "w", "role": "held_out", "presets": "smollm2"}, "goes with model"),
    ({"name": "w", "role": "held_out", "model": ""}, "model must be"),
])
def test_bad_model_worlds_are_one_line(entry, message):
    with pytest.raises(WorldError, match=message):
        parse_world(entry)


def test_a_study_records_the_protocol_it_runs_under():
    from agents.experiments.study import StudyPlan
    from agents.experiments.study_report import protocol_commit

    (world,) = load_worlds(SMOLLM2_WORLDS)
    plan = StudyPlan((world,), ("base", "cuma"), Budget(steps=4, eval_every=0), protocol="docs/smollm2-protocol.md")
    assert plan.to_dict()["protocol"] == "docs/smollm2-protocol.md"
    assert "protocol" not in StudyPlan((world,), ("base",), Budget(steps=4, eval_every=0)).to_dict()
    assert protocol_commit(path="docs/smollm2-protocol.md")["file"] == "docs/smollm2-protocol.md"


def test_a_model_world_cell_trains_the_config_its_spec_records(tiny_base_dir, tmp_path):
    """The run a cell trains is the config its cell.json records (the world's presets, not the tiny ones): the
    tiny base stands in for a pretrained model here, trained from the smollm2 presets for one small step."""
    from agents.config import load_config
    from agents.experiments.study_cells import run_cell

    world = parse_world({"name": "as_model", "role": "held_out", "model": str(tiny_base_dir), "presets": "smollm2",
                         "seeds": 1})
    budget = Budget(steps=1, eval_every=0, eval_n_per_level=2,
                    overrides=("rollout.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=8"))
    cell = Cell(world, "oracle", 0)
    result = run_cell(cell, tmp_path, budget, world.model, "validation")
    trained = load_config(path=tmp_path / result["run_dir"] / "config.yaml")
    expected = cell_config(cell, budget, world.model, "validation")
    assert trained.to_dict() == expected.to_dict()
    assert trained.train.lr == 3e-6 and trained.env.levels == [1, 2]  # smollm2-oracle's, not tiny-oracle's


def test_the_committed_smollm2_cells_are_finished_cells_of_the_protocols_command():
    """docs/results/smollm2: every committed cell is a finished cell of the command in docs/smollm2-protocol.md
    (its overrides included), so presets or defaults changed later cannot silently orphan them."""
    from pathlib import Path

    from agents.cli import build_parser
    from agents.commands import parse
    from agents.commands.study import make_plan
    from agents.experiments.study import different_cells
    from agents.experiments.study_cells import finished

    root = Path(__file__).resolve().parents[1] / "docs" / "results" / "smollm2"
    args = parse(build_parser(), [
        "study", "--worlds", str(SMOLLM2_WORLDS), "--arms-file", str(SMOLLM2_WORLDS.parent / "smollm2-contrasts.yaml"),
        "--arms", "base", "ttrl", "cuma", "cuma_gated", "oracle", "--steps", "30", "--n-per-level", "100",
        "--protocol", "docs/smollm2-protocol.md", "--out", str(root), "model.num_threads=1", "train.micro_batch=16"])
    plan = make_plan(args)
    paths = {"smollm2": "smollm2-135m"}
    assert different_cells(root, plan, paths) == []
    done = [c.label for c in plan.cells()
            if finished(c, root, cell_spec(c, plan.budget, paths[c.world.name], plan.split)) is not None]
    assert "smollm2/base" in done


def test_a_one_world_study_decides_on_its_world_interval_and_shows_each_seed(tmp_path):
    """docs/smollm2-protocol.md: one world, two seeds. The verdicts read the world's own t-interval (a pool of
    one world is that world), each hypothesis' contrast is printed seed by seed, and a contrast whose seeds
    differ in sign is named as such in study.md."""
    from study_fakes import fake_cell_results

    from agents.experiments.study import StudyPlan, study_budget
    from agents.experiments.study_analysis import analyse
    from agents.experiments.study_arms_file import load_arms_file
    from agents.experiments.study_report import format_markdown

    table = load_arms_file(SHIPPED.parent / "smollm2-contrasts.yaml")
    plan = StudyPlan(tuple(load_worlds(SMOLLM2_WORLDS)), ("base", "ttrl", "cuma"), study_budget(), table=table)
    up = fake_cell_results(plan, {"base": 0.0, "ttrl": 0.0, "cuma": 0.3}, n=40, seed=1)
    down = fake_cell_results(plan, {"base": 0.0, "ttrl": 0.3, "cuma": 0.0}, n=40, seed=1)
    results = [r for r in up if r["seed"] != 1] + [r for r in down if r["seed"] == 1 and r["arm"] != "base"]
    for r in results:  # the SmolLM2 world evaluates levels 1-2 only
        r["levels"] = {k: v for k, v in r["levels"].items() if k in ("1", "2")}
        r["per_level"] = r["per_level"][:2]
        r["mean"] = sum(r["per_level"]) / 2
    analysis = analyse(plan.worlds, results, n_boot=200, table=table)
    world = analysis["worlds"]["smollm2"]["contrasts"]
    s2 = world["cuma - ttrl"]
    assert s2["seeds"] == [0, 1] and s2["per_seed"][0] > 0.1 and s2["per_seed"][1] < -0.1
    assert abs(sum(s2["per_seed"]) / 2 - s2["estimate"]) < 1e-3
    rows = {h["hypothesis"]: h for h in analysis["hypotheses"]}
    assert rows["S2"]["interval"] == analysis["pooled"]["held_out"]["cuma - ttrl"] and rows["S2"]["interval"][
        "estimate"] == s2["estimate"] and rows["S2"]["interval"]["low"] == s2["low"]
    assert rows["S2"]["seeds_disagree_in"] == ["smollm2"] and rows["S2"]["verdict"] == "undecided"
    assert world["ttrl - base"]["seeds"] == [0, 1]  # the base's one row pairs with each seed
    study = {"analysis": analysis, "plan": plan.to_dict(),
             "protocol": {"file": "docs/smollm2-protocol.md", "commit": "abc", "modified_since": False}}
    md = format_markdown(study)
    assert "`cuma - ttrl` s0 +" in md and "(signs differ)" in md and "| smollm2 |" in md
    assert "| arm | seeds | L1 | L2 | mean ± sd | vs base [95% CI] | greedy answers L1 / L2 |" in md
