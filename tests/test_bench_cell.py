"""benchmarks/bench_cell.py runs end to end at a toy size (one step, 3 problems per level, one timed round):
every function its clock wraps still exists under its name, each way evaluates as many times as it should, and
the greedy-only new way (`--new-eval-samples 0`, study 2's cell setting) gives the old way's final results.

Timings are printed, never asserted.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cell.py"


def _module():
    spec = importlib.util.spec_from_file_location("bench_cell", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_function_the_clock_wraps_exists():
    for module, attribute, name, _ in _module().WRAPPED:
        owner = importlib.import_module(module)
        owner = getattr(owner, attribute) if attribute else owner
        assert callable(getattr(owner, name, None)), f"{module}.{attribute or ''}{'.' if attribute else ''}{name}"


@pytest.mark.slow
def test_bench_cell_runs_and_finds_the_greedy_only_cell_identical(tiny_base_dir, tmp_path):
    out = tmp_path / "cell.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--steps", "1", "--n-per-level", "3", "--rounds", "2",
                           "--new-eval-samples", "0", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "new: eval.samples=0" in proc.stdout and "measured old / new:" in proc.stdout
    assert "in every round: yes" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["identical"] == [True, True] and len(saved["timed"]["new"]) == 1
    for way in ("old", "new"):  # a start and a final evaluation each, no mid-run one (the study's eval.every=0)
        assert [t["evaluations"] for t in saved["timed"][way]] == [2]
        assert saved["median"][way]["mid-run evaluations"] == 0.0
