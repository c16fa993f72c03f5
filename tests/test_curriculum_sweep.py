"""examples/curriculum_sweep.py: runs to completion with the tiny model and writes its CSVs and PNG."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "curriculum_sweep.py"


def load_script():
    spec = importlib.util.spec_from_file_location("curriculum_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sweep_script_runs_with_the_random_tiny_model(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(SCRIPT), "--policy", "random", "--groups", "40", "--batch", "8",
                             "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(tmp_path / "groups.csv")
    assert tuple(rows[0]) == load_script().CSV_COLUMNS
    assert {r["schedule"] for r in rows} == {"sequential", "agreement_gated", "learning_progress", "uniform", "fixed"}
    assert len(rows) == 5 * 40
    summary = read_csv(tmp_path / "summary.csv")
    assert {"agreement", "mask_rate", "majority_accuracy"} <= set(summary[0])
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    assert elapsed < 280


def test_run_sweep_feeds_the_learner_and_logs_diagnostics_apart_from_the_schedule(tmp_path):
    sweep = load_script()
    calls = []

    class Learner(sweep.SimulatedPolicy):
        def learn(self, batch):
            calls.append(len(batch))
            assert all(isinstance(info["curriculum"], dict) for _, _, info in batch)

    schedules = {"gated": {"name": "agreement_gated"}, "seq": {"name": "sequential", "steps_per_level": 8}}
    rows, seconds = sweep.run_sweep(schedules, policy_factory=lambda: Learner(seed=0), env_id="CuMa-Arith-v0",
                                    groups=40, batch=16, group_size=8, seed=0)
    assert calls == [16, 16, 8] * 2 and set(seconds) == {"gated", "seq"}
    seq = [r for r in rows if r["schedule"] == "seq"]
    assert [r["level"] for r in seq[:16]] == [1] * 8 + [2] * 8 and seq[-1]["curriculum_level"] == 5
    assert all(r["majority_correct"] in (0, 1) for r in rows)  # arithmetic problems carry hidden answers
    summary = sweep.summarize(rows)
    sweep.plot(rows, summary, tmp_path / "p.png")
    assert (tmp_path / "p.png").exists()


def test_simulated_weak_base_keeps_the_probed_gate_on_level_one(tmp_path):
    """The gate's probe sees that level 2 is not ready for the (frozen) weak base; without probes it promotes."""
    sweep = load_script()
    common = dict(env_id="CuMa-Arith-v0", groups=160, batch=16, group_size=8, seed=0)
    probed = sweep.run_schedule("g", {"name": "agreement_gated"}, policy=sweep.SimulatedPolicy(0), **common)
    blind = sweep.run_schedule("g", {"name": "agreement_gated"}, policy=sweep.SimulatedPolicy(0), probe=False, **common)
    assert {r["level"] for r in probed} == {1}
    assert max(r["level"] for r in blind) == 2


@pytest.mark.slow
def test_train_gives_every_schedule_a_fresh_base_trained_by_the_agent(tiny_base_dir, tmp_path):
    """`--train`: each schedule is a real `agents.trainer` run from the same base; the sweep's CSVs come from it."""
    from agents.config import from_dict, read_yaml

    sweep = load_script()
    args = ["--train", "--schedules", "sequential,uniform", "--groups", "8", "--batch", "4", "--group-size", "4",
            "--set", f"model.path={tiny_base_dir}", "--set", "eval.n_per_level=2", "--set", "eval.samples=1",
            "--set", "train.warmup_steps=0", "--out", str(tmp_path)]
    assert sweep.main(args) == 0
    rows = read_csv(tmp_path / "groups.csv")
    assert tuple(rows[0]) == sweep.CSV_COLUMNS
    for label in ("sequential", "uniform"):
        mine = [r for r in rows if r["schedule"] == label]
        assert [int(r["group"]) for r in mine] == list(range(8)) and [r["batch"] for r in mine] == ["0"] * 4 + ["1"] * 4
        run = tmp_path / "runs" / label
        config = from_dict(read_yaml(run / "config.yaml"))
        assert config.curriculum.schedule == label and config.train.steps == 2
        assert (config.rollout.prompts_per_step, config.rollout.group_size) == (4, 4)
        metrics = read_csv(run / "metrics.csv")
        assert [m["step"] for m in metrics] == ["1", "2"] and float(metrics[0]["lr"]) > 0
        assert sum(int(m["kept_groups"]) for m in metrics) == sum(1 - int(r["masked"]) for r in mine)
    assert from_dict(read_yaml(tmp_path / "runs" / "sequential" / "config.yaml")).curriculum.options == {
        "steps_per_level": 1}
    heldout = read_csv(tmp_path / "heldout.csv")
    before = {(r["schedule"], r["level"]): r["greedy"] for r in heldout if r["step"] == "0"}
    assert len(before) == 10 and {r["step"] for r in heldout} == {"0", "2"}
    assert all(before[("uniform", lv)] == before[("sequential", lv)] for lv in "12345")  # the same start
    summary = read_csv(tmp_path / "summary.csv")
    assert {r["schedule"] for r in summary} == {"sequential", "uniform"}
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
