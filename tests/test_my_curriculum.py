"""The worked example examples/my_curriculum runs as its README says, from the repository root of a clone.

The schedule is imported from the example's own file (its folder on sys.path, forgotten afterwards:
tests/test_plugins.py writes another `my_sched`); the study (slow) is a real `cuma study` subprocess with only
`PYTHONPATH=examples/my_curriculum` added. Training with the schedule and resuming is
tests/test_plugins.py::test_cuma_train_with_a_schedule_from_a_file_then_resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_curriculum"
CUMA = str(Path(sys.executable).with_name("cuma"))  # the console script, as a user runs it


@pytest.fixture
def example_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    sys.modules.pop("my_sched", None)
    yield
    sys.modules.pop("my_sched", None)


def group(level: int, agreement: float) -> dict:
    """The label-free info of one scored group of 8."""
    count = round(agreement * 8)
    return {"level": level, "agreement": count / 8, "masked": False, "majority": "7", "majority_count": count,
            "group_size": 8, "parse_rate": 1.0}


def test_first_two_holds_levels_1_2_until_level_2_agrees_then_moves_to_3(example_on_path):
    from curricula import make_schedule, schedule_from_state

    schedule = make_schedule("my_sched:FirstTwo", window=4, threshold=0.75)
    assert schedule.level_weights() == {1: 0.5, 2: 0.5, 3: 0.0, 4: 0.0, 5: 0.0}
    for _ in range(8):
        schedule.update(group(1, 1.0))  # level 1 does not count
    for agreement in (1.0, 1.0, 1.0, 0.25):
        schedule.update(group(2, agreement))  # mean 0.8125 >= 0.75 only with the 4th: not before the window fills
        assert not schedule.moved or agreement == 0.25
    assert schedule.moved and schedule.level_weights()[3] == 1.0 and schedule.level() == 3
    low = make_schedule("my_sched:FirstTwo", window=4, threshold=0.75)
    for _ in range(10):
        low.update(group(2, 0.5))
    assert not low.moved and low.summary()["level2_agreement"] == 0.5
    state = json.loads(json.dumps(low.state_dict()))  # plain JSON, as in a checkpoint
    again = schedule_from_state(state)
    assert state["name"] == "my_sched:FirstTwo" and type(again).__name__ == "FirstTwo"
    assert (again.recent, again.moved, again.window) == (low.recent, low.moved, 4)


def test_the_example_config_and_arms_load(example_on_path, tmp_path):
    from agents.config import ConfigError, load_config
    from agents.experiments.study_arms_file import load_arms_file

    config = load_config(overrides=["curriculum.schedule=my_sched:FirstTwo"])  # the preset's options dropped
    assert config.curriculum.options == {}
    with pytest.raises(ConfigError, match="curriculum: FirstTwo: window must be >= 1"):
        load_config(overrides=["curriculum.schedule=my_sched:FirstTwo", "curriculum.options.window=0"])
    table = load_arms_file(EXAMPLE / "arms.yaml")
    mine = table.arm("mine")
    assert mine.method == "cuma_gated" and "curriculum.schedule=my_sched:FirstTwo" in mine.overrides
    assert [(c.a, c.b, c.hypothesis) for c in table.added_contrasts] == [("mine", "cuma_gated", "H7")]


def test_the_walk_through_quotes_the_schedule_as_it_is():
    """docs/extending.md shows `level_weights` and `_update` of my_sched.py: the same lines."""
    doc = (REPO / "docs" / "extending.md").read_text().split("## From an idea to a forest plot", 1)[1]
    quoted = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert "def level_weights" in quoted and quoted in (EXAMPLE / "my_sched.py").read_text()


@pytest.mark.slow
def test_the_quick_study_of_the_example_runs_from_the_repository_root(tiny_base_dir, tmp_path):
    """`PYTHONPATH=examples/my_curriculum cuma study --quick --arms-file examples/my_curriculum/arms.yaml --arms
    base mine --out DIR` (the README's step 3): study.json names `mine`, study.md and forest.png are written."""
    out = tmp_path / "study"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": "examples/my_curriculum"}
    proc = subprocess.run([CUMA, "study", "--quick", "--arms-file", "examples/my_curriculum/arms.yaml",
                           "--arms", "base", "mine", "--out", str(out), "--no-progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study = json.loads((out / "study.json").read_text())
    assert study["plan"]["arms"] == ["base", "mine"] and study["plan"]["arms_file"]["arms"][0]["name"] == "mine"
    assert [c["cell"] for c in study["cells"]] == ["design/base", "design/mine-s0"]
    assert "mine - base" in study["analysis"]["worlds"]["design"]["contrasts"]
    spec = json.loads((out / "cells" / "design" / "mine-s0" / "cell.json").read_text())["arm_spec"]
    assert "curriculum.schedule=my_sched:FirstTwo" in spec["overrides"]
    assert "- `mine` (method `cuma_gated`" in (out / "study.md").read_text()
    assert (out / "forest.png").read_bytes()[:4] == b"\x89PNG"
