"""The examples run as users run them (tiny budgets)."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reinforce_example_trains_against_the_gym_env(tiny_base_dir):
    history = load("other_algorithm").main(["--model", str(tiny_base_dir), "--steps", "6", "--lr", "1e-4"])
    assert len(history["reward"]) == 6 and all(0.0 <= r <= 1.0 for r in history["reward"])
    assert history["updates"] >= 1  # level 1-2 groups of the weak base mostly agree -> some carry a gradient


def test_train_tiny_example_runs_the_agent(tiny_base_dir, capsys):
    result = load("train_tiny").main(steps=3, n_per_level=10)
    assert len(result["trained_groups"]) == 3 and sum(result["trained_groups"]) >= 1
    assert set(result["before"]["levels"]) == set(result["after"]["levels"]) == {1, 2, 3, 4, 5}
    assert result["level"] in (1, 2, 3, 4, 5)
    out = capsys.readouterr().out
    assert "held-out before:" in out and "held-out after:" in out and "step 3:" in out
