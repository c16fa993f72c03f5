"""Synthetic per-problem study results for the analysis tests (no training): shared by the study test files."""

from __future__ import annotations

import numpy as np


def fake_cell_results(plan, gains, n=30, seed=0):
    """Per-problem results as cells write them: arm `a` right with probability base rate + gains[a]."""
    rng = np.random.default_rng(seed)
    results = []
    for cell in plan.cells():
        levels, per_level = {}, []
        for lv, rate in zip(range(1, 6), (0.9, 0.8, 0.6, 0.1, 0.0)):
            correct = (rng.random(n) < rate + gains[cell.arm]).astype(int).tolist()
            levels[str(lv)] = {"ids": [f"arith-{lv}-{i}" for i in range(n)], "correct": correct,
                               "answered": [1] * n}
            per_level.append(sum(correct) / n)
        samples = 0 if cell.arm == "base" else 120 * 128
        results.append({"cell": cell.label, "world": cell.world.name, "arm": cell.arm, "seed": cell.seed,
                        "levels": levels, "per_level": per_level, "mean": sum(per_level) / 5, "collapse": 0.02,
                        "samples": {"steps": 120, "train": samples, "probe": 0, "total": samples}, "wall_s": 1.0})
    return results
