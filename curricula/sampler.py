"""`LevelSampler`: problems of a requested level, without replacement within an epoch, seeded, resumable.

Works over any `cuma_env.ProblemSource` (the MATH pool, the procedural family, synthetic files): it only
calls `levels`, `size(level)` and `get(level, index)`.

Each (stream, level) pair has its own position: an epoch number and an index into that epoch's order. The
order of epoch `e` of level `k` in stream `s` is the permutation drawn from `numpy.random.default_rng([seed,
k, e, crc32(s)])`, so the whole state is `seed` plus the positions: a restored sampler continues exactly the
same stream. Streams keep training draws (`"train"`) apart from probe draws (`"probe"`, prompts a schedule
samples without training), so probing never changes which problems training sees. A source with an
unbounded level (`size(level) is None`) is walked in its own order, one index after the other.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from cuma_env.problems import Problem, ProblemSource

TRAIN_STREAM = "train"
PROBE_STREAM = "probe"


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def level_key(level: int | None) -> str:
    """A level as a JSON object key (`"3"`, or `"none"` for an unleveled source)."""
    return "none" if level is None else str(int(level))


def parse_level_key(key: str) -> int | None:
    return None if key == "none" else int(key)


class LevelSampler:
    """Draws problems level by level from a `ProblemSource`.

    Args:
        source: any `ProblemSource`.
        seed: seeds every epoch's order (see the module docstring).
        levels: the levels to serve (default: all the source has); each must have at least one problem.
        shuffle: if False, epochs walk the source in its own order (useful for debugging).
    """

    def __init__(self, source: ProblemSource, seed: int = 0, levels: Sequence[int | None] | None = None,
                 shuffle: bool = True):
        self.source = source
        self.seed = _check_seed(seed)
        self.shuffle = bool(shuffle)
        available = tuple(source.levels)
        self.levels: tuple[int | None, ...] = available if levels is None else tuple(levels)
        unknown = [lv for lv in self.levels if lv not in available]
        if unknown or not self.levels:
            raise ValueError(f"source {source.name!r} serves levels {available}; cannot sample {unknown or 'none'}")
        self._sizes: dict[int | None, int | None] = {lv: source.size(lv) for lv in self.levels}
        empty = [lv for lv, n in self._sizes.items() if n is not None and n < 1]
        if empty:
            raise ValueError(f"source {source.name!r} has no problems at levels {empty}")
        self._positions: dict[str, dict[int | None, list[int]]] = {}  # stream -> level -> [epoch, index]
        self._orders: dict[tuple[str, int | None, int], np.ndarray] = {}  # cached epoch permutations

    # --- drawing ---------------------------------------------------------------------------------
    def size(self, level: int | None) -> int | None:
        self._check_level(level)
        return self._sizes[level]

    def draw(self, level: int | None, stream: str = TRAIN_STREAM) -> Problem:
        """The next problem of `level` in `stream`; a new epoch (a fresh order) starts when one is used up."""
        self._check_level(level)
        position = self._positions.setdefault(stream, {}).setdefault(level, [0, 0])
        epoch, index = position
        size = self._sizes[level]
        if size is None:
            problem = self.source.get(level, index)
        else:
            problem = self.source.get(level, int(self._order(stream, level, epoch)[index]))
        index += 1
        if size is not None and index >= size:
            epoch, index = epoch + 1, 0
            self._orders = {k: v for k, v in self._orders.items() if k[:2] != (stream, level)}
        position[0], position[1] = epoch, index
        return problem

    def draw_many(self, level: int | None, n: int, stream: str = TRAIN_STREAM) -> list[Problem]:
        """`n` problems of `level`, all distinct when `n` <= the level's size (they may span an epoch edge)."""
        if self._sizes.get(level) is not None and n <= self._sizes[level]:
            out: list[Problem] = []
            seen: set[str] = set()
            while len(out) < n:
                problem = self.draw(level, stream)
                if problem.id not in seen:  # an epoch edge may repeat a problem; skip it
                    seen.add(problem.id)
                    out.append(problem)
            return out
        return [self.draw(level, stream) for _ in range(n)]

    def position(self, level: int | None, stream: str = TRAIN_STREAM) -> tuple[int, int]:
        """(epoch, index within the epoch) of the next draw."""
        self._check_level(level)
        epoch, index = self._positions.get(stream, {}).get(level, [0, 0])
        return epoch, index

    def reseed(self, seed: int) -> None:
        """Start over: new seed, every stream back to epoch 0, index 0."""
        self.seed = _check_seed(seed)
        self._positions.clear()
        self._orders.clear()

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON: the seed, the source's identity (name and sizes) and every stream's position."""
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "source": getattr(self.source, "name", type(self.source).__name__),
            "sizes": {level_key(lv): n for lv, n in self._sizes.items()},
            "positions": {stream: {level_key(lv): list(pos) for lv, pos in levels.items()}
                          for stream, levels in self._positions.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore positions; refuses a state taken over a different source (other name or level sizes)."""
        name = getattr(self.source, "name", type(self.source).__name__)
        if state.get("source") != name:
            raise ValueError(f"sampler state is for source {state.get('source')!r}, this sampler draws from {name!r}")
        sizes = {parse_level_key(k): v for k, v in state.get("sizes", {}).items()}
        for lv, n in sizes.items():
            if lv in self._sizes and self._sizes[lv] != n:
                raise ValueError(f"sampler state expects {n} problems at level {lv}, the source has {self._sizes[lv]}")
        self.seed = int(state["seed"])
        self.shuffle = bool(state.get("shuffle", True))
        self._orders.clear()
        self._positions = {}
        for stream, levels in state.get("positions", {}).items():
            for key, pos in levels.items():
                lv = parse_level_key(key)
                self._check_level(lv)
                self._positions.setdefault(stream, {})[lv] = [int(pos[0]), int(pos[1])]

    # --- internals -------------------------------------------------------------------------------
    def _order(self, stream: str, level: int | None, epoch: int) -> np.ndarray:
        key = (stream, level, epoch)
        order = self._orders.get(key)
        if order is None:
            size = self._sizes[level]
            if self.shuffle:
                entropy = [self.seed, 0 if level is None else int(level), epoch, zlib.crc32(stream.encode())]
                order = np.random.default_rng(entropy).permutation(size)
            else:
                order = np.arange(size)
            self._orders[key] = order
        return order

    def _check_level(self, level: int | None) -> None:
        if level not in self._sizes:
            raise ValueError(f"level {level!r} is not served by this sampler (levels {self.levels})")

    def __repr__(self) -> str:
        return f"LevelSampler({getattr(self.source, 'name', self.source)!r}, seed={self.seed}, levels={self.levels})"
