"""Checkpoints: one file per saved step, written atomically, holding everything a resume needs.

A checkpoint is a `torch.save`d dict (see `agents.trainer`): `step`, `model` (state dict), `learner` (its
optimizer, scheduler and, when a KL reference is used, the frozen reference's weights), `stream` (the
curriculum stream's JSON states, see `agents.rollout`), `rng` (torch CPU/CUDA, numpy, python `random`),
`trainer` (counters) and `config`. Everything in it is tensors, numbers, strings and containers (the numpy
RNG state is stored as a tensor, not a pickled array), so it loads with `torch.load(weights_only=True)`: a
run directory from elsewhere cannot run code when `cuma eval`/`--resume` reads it. It is written
to a temporary file in the same folder, flushed to disk, then renamed over its final name (`os.replace`
is atomic), so a `kill -9` at any moment leaves either the previous set of checkpoints or the new one,
never a truncated file. `latest_checkpoint` only ever sees complete files (`step-XXXXXXX.pt`).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cuma_env.atomic_io import atomic_file

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step-(\d{7})\.pt$")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / f"step-{step:07d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `state` for `step` atomically; keep only the newest `keep` checkpoints."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(run_dir, step)
    with atomic_file(final, "wb") as handle:
        torch.save({**state, "step": int(step)}, handle)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".step-*.tmp-*"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    return final


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a foreign or damaged file: say which one
        raise RuntimeError(f"cannot read checkpoint {path}: {exc}") from None


# --- random number generators --------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state: dict[str, Any] = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # the current device's generator only (`build_policy` makes the policy's device current), so a run
        # resumes on a machine with another number of GPUs, or on another one of them
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if isinstance(cuda, (list, tuple)):  # checkpoints before 2026-12 saved every device's state
            cuda = cuda[torch.cuda.current_device()] if torch.cuda.current_device() < len(cuda) else cuda[0]
        torch.cuda.set_rng_state(cuda)
