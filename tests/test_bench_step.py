"""benchmarks/bench_step.py runs end to end (one round, one step, TRL skipped) and prints its table and ratios;
benchmarks/bench_learner_memory.py runs at a toy shape.

Timings are printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_step.py"


@pytest.mark.slow
def test_bench_step_runs_and_prints_ratios(tiny_base_dir, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rounds", "1", "--steps", "1", "--skip-trl",
                           "--base", str(tiny_base_dir), "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert "trl: skipped (--skip-trl)" in text
    for name in ("ours-default", "ours-default-uniform", "ours-ttrl", "minimal"):
        assert f"| {name} |" in text
    assert "ratio minimal / ours-default:" in text and "ratio minimal / ours-default-uniform:" in text
    assert "generate" in text
    saved = json.loads(out.read_text())
    assert set(saved["contenders"]) == {"ours-default", "ours-default-uniform", "ours-ttrl", "minimal"}
    assert all(c["median_s"] > 0 and c["ratio_vs_trl"] is None and c["paired_ratios_vs_trl"] == []
               for c in saved["contenders"].values())
    assert "paired, median (range)" in text
    # the like-for-like contender samples the others' uniform mix; the default starts on its curriculum's level 1
    assert len(saved["contenders"]["ours-default-uniform"]["problems_per_level"]) >= 3
    assert set(saved["contenders"]["ours-default"]["problems_per_level"]) == {"1"}


def test_paired_ratios_pair_each_round_with_trls_same_round():
    """A slow round slows both contenders of that round: pairing cancels it where pooled medians do not."""
    spec = importlib.util.spec_from_file_location("bench_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paired_ratios = module.paired_ratios

    trl = [0.20, 0.30, 0.20]     # round 2 ran while the machine was slow
    ours = [0.10, 0.15, 0.10]
    assert paired_ratios(trl, ours) == pytest.approx([2.0, 2.0, 2.0])
    assert paired_ratios([], ours) == []  # no TRL: no pairs


def test_bench_learner_memory_runs_at_a_tiny_shape(tmp_path):
    """benchmarks/bench_learner_memory.py on the CPU at a toy shape: every micro-batch size runs and is printed."""
    script = SCRIPT.parent / "bench_learner_memory.py"
    out = tmp_path / "memory.json"
    proc = subprocess.run([sys.executable, str(script), "--shape", "tiny", "--device", "cpu", "--rows", "6",
                           "--width", "48", "--prompt", "8", "--micro-batch", "0", "4", "1", "--repeats", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| one pass | n/a (cpu) |" in proc.stdout and "| 4 | n/a (cpu) |" in proc.stdout
    saved = json.loads(out.read_text())
    assert [r["micro_batch"] for r in saved["results"]] == [0, 4, 1]
    assert all(not r["oom"] and r["seconds"] > 0 for r in saved["results"])
