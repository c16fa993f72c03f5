"""`cuma study --arms-file`: a researcher's arms and contrasts join the shipped ones without editing the package;
bad files are one line naming the fix; (slow) a quick study runs an arm of a file and refuses a changed one."""

from __future__ import annotations

import json

import pytest
from study_fakes import fake_cell_results

from agents.experiments.study import StudyPlan, study_budget
from agents.experiments.study_analysis import analyse
from agents.experiments.study_arms import ARM_ORDER
from agents.experiments.study_cells import Cell, cell_config, cell_spec
from agents.experiments.worlds import load_worlds

# --- arms from a file ------------------------------------------------------------------------------
MINE = {"name": "mine", "method": "cuma_gated", "overrides": ["curriculum.schedule=uniform", "curriculum.options={}"],
        "votes": "never", "description": "the gated mask and probes, levels uniform"}
MINE_CONTRAST = {"a": "cuma_gated", "b": "mine", "why": "what the curriculum adds", "hypothesis": "H7"}


def arms_file(path, arms=(MINE,), contrasts=(MINE_CONTRAST,)):
    import yaml

    path.write_text(yaml.safe_dump({"arms": list(arms), "contrasts": list(contrasts)}))
    return path


def test_an_arms_file_joins_the_shipped_arms_and_its_cells_record_the_whole_arm(tmp_path):
    from agents.experiments.study_arms_file import load_arms_file

    table = load_arms_file(arms_file(tmp_path / "arms.yaml"))
    assert table.order == (*ARM_ORDER, "mine") and table.arm("mine").overrides == tuple(MINE["overrides"])
    worlds = tuple(load_worlds())[:2]
    plan = StudyPlan(worlds, ("mine", "base", "cuma_gated"), study_budget(), table=table)
    assert plan.arms == ("base", "cuma_gated", "mine") and plan.to_dict()["arms_file"]["arms"][0] == MINE | {
        "design_only": False}
    (mine,) = [c for c in plan.cells() if c.arm == "mine" and c.seed == 0 and c.world.role == "design"]
    config = cell_config(mine, plan.budget, "tiny")
    assert (config.curriculum.schedule, config.env.min_votes) == ("uniform", 0.75)  # cuma_gated's mask
    spec = cell_spec(mine, plan.budget, "tiny", "test")
    assert spec["arm_spec"] == table.arm("mine").to_dict() and spec["method"] == "cuma_gated"
    shipped = Cell(worlds[0], "cuma_gated", 0)
    assert "arm_spec" not in cell_spec(shipped, plan.budget, "tiny", "test")  # shipped arms' specs unchanged
    changed = load_arms_file(arms_file(tmp_path / "b.yaml", [MINE | {"description": "another"}], []))
    assert cell_spec(Cell(worlds[0], "mine", 0, changed.arm("mine")), plan.budget, "tiny", "test") != spec
    results = fake_cell_results(plan, {"base": 0.0, "cuma_gated": 0.3, "mine": 0.1}, n=10)
    analysis = analyse(plan.worlds, results, n_boot=200, table=table)
    assert {"mine - base", "cuma_gated - mine"} <= {c["name"] for c in analysis["contrasts"]}
    assert "H7" in {h["hypothesis"] for h in analysis["hypotheses"]}
    assert list(analysis["worlds"]["design"]["arms"]) == ["base", "cuma_gated", "mine"]


@pytest.mark.parametrize("arms,contrasts,message", [
    ([MINE | {"name": "ttrl"}], [], "arm 'ttrl' is a shipped arm; give yours another name"),
    ([MINE | {"method": "cuma_fancy"}], [], "arm 'mine': unknown method 'cuma_fancy'; choose from base, ttrl"),
    ([MINE | {"overides": []}], [], "arm 1: unknown key 'overides'; did you mean 'overrides'?"),
    ([{"name": "mine"}], [], "arm 1: missing 'method'"),
    (["mine"], [], "arm 1: expected a mapping with name, method"),
    ([MINE | {"overrides": ["lr 3e-5"]}], [], "overrides must be a list of 'key=value' strings"),
    ([MINE | {"votes": "some"}], [], "votes must be one of one, never, -"),
    ([MINE | {"name": "my arm"}], [], "name must be letters, digits"),
    ([MINE, MINE], [], "arm 'mine' is defined twice"),
    ([MINE], [MINE_CONTRAST | {"b": "yours"}], "contrast 'cuma_gated - yours': unknown arm 'yours'"),
    ([MINE], [MINE_CONTRAST | {"hypothesis": "H1"}], "hypothesis 'H1' is taken"),
    ([MINE], [{"a": "cuma_gated", "b": "base"}], "contrast 'cuma_gated - base' is a shipped contrast already"),
    ([], [], "'arms' must be a list of arms (empty only when the file adds contrasts)"),
])
def test_a_bad_arms_file_is_one_line_naming_the_fix(tmp_path, capsys, arms, contrasts, message):
    from agents.commands.study import main
    from agents.experiments.study_arms_file import ArmsFileError, load_arms_file

    path = arms_file(tmp_path / "arms.yaml", arms, contrasts)
    with pytest.raises(ArmsFileError) as info:
        load_arms_file(path)
    assert message in str(info.value) and "\n" not in str(info.value) and str(info.value).startswith(str(path))
    assert main(["--quick", "--arms-file", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_arms_file_arm_with_a_bad_override_is_named(tmp_path, capsys):
    from agents.commands.study import main

    path = arms_file(tmp_path / "arms.yaml", [MINE | {"overrides": ["train.nope=1"]}], [])
    assert main(["--quick", "--arms-file", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"arm 'mine' of {path}: " in err and "unknown key" in err


@pytest.mark.slow
def test_a_quick_study_runs_an_arm_of_an_arms_file_and_refuses_a_changed_file(tiny_base_dir, tmp_path, capsys):
    """`--arms-file FILE --arms base mine`: study.json names `mine`; the same --out with the arm changed in the
    file is refused (one line) before anything runs."""
    from agents.commands.study import main

    path, out = arms_file(tmp_path / "arms.yaml", contrasts=()), tmp_path / "out"
    assert main(["--quick", "--arms-file", str(path), "--arms", "base", "mine", "--out", str(out),
                 "--no-progress"]) == 0
    study = json.loads((out / "study.json").read_text())
    assert study["plan"]["arms"] == ["base", "mine"] and study["plan"]["arms_file"]["arms"][0]["name"] == "mine"
    assert [c["cell"] for c in study["cells"]] == ["design/base", "design/mine-s0"]
    assert "mine - base" in study["analysis"]["worlds"]["design"]["contrasts"]
    assert json.loads((out / "cells" / "design" / "mine-s0" / "cell.json").read_text())["arm_spec"]["overrides"] == \
        MINE["overrides"]
    assert "- `mine` (method `cuma_gated`" in (out / "study.md").read_text()
    capsys.readouterr()
    arms_file(path, [MINE | {"overrides": [*MINE["overrides"], "curriculum.probe=false"]}], [])
    assert main(["--quick", "--arms-file", str(path), "--arms", "base", "mine", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "mine-s0 holds a cell with a different configuration" in err and len(err.strip().splitlines()) == 1


def test_an_arms_file_may_add_contrasts_alone(tmp_path):
    """A protocol about shipped arms (docs/smollm2-protocol.md) brings its hypotheses without new arms."""
    from agents.experiments.study_arms_file import load_arms_file

    path = arms_file(tmp_path / "contrasts.yaml", [], [{"a": "ttrl", "b": "base", "why": "TTRL's gain",
                                                         "hypothesis": "S1"}])
    table = load_arms_file(path)
    assert table.added == () and [c.hypothesis for c in table.added_contrasts] == ["S1"]


def test_a_shipped_pair_with_a_hypothesis_of_ones_own_replaces_the_shipped_entry(tmp_path):
    from agents.experiments.study_arms_file import load_arms_file

    path = arms_file(tmp_path / "contrasts.yaml", [], [{"a": "cuma", "b": "ttrl", "why": "mine", "hypothesis": "S2"}])
    contrasts = {c.name: c for c in load_arms_file(path).contrasts}
    assert contrasts["cuma - ttrl"].hypothesis == "S2" and contrasts["cuma - ttrl"].why == "mine"
    assert sum(c.name == "cuma - ttrl" for c in load_arms_file(path).contrasts) == 1
    assert contrasts["cuma_gated - base"].hypothesis == "H1"
