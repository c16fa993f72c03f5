"""Procedural arithmetic in five levels: problems of known difficulty that need no data files.

The ladder is the one a prototype (docs/label-free-tiny-world.md, "Before the package") found to give a graded
difficulty profile for a tiny model (a first ladder that jumped from 1-digit sums to products made level 1
trivial and votes uninformative):

    L1  a + b        a, b in 0..9
    L2  a + b        a in 10..99, b in 0..9
    L3  a + b        a, b in 10..99
    L4  a - b        a, b in 10..99 (the result may be negative)
    L5  a + b - c    a, b, c in 10..99

Three splits that never overlap: `train` (about 70%, what a policy and the tiny base train on), `validation`
(about 10%, where every tuning choice is made) and `test` (about 20%, read only by a study's final
evaluation). A problem's split is a fixed hash of its *unordered* operands (the sorted operand tuple),
independent of any seed and of the level's signs: `23 + 45` and `45 + 23`, `45 - 23` and `23 - 45`, and
every reordering of a level-5 `a + b - c` land in the same split, so no held-out problem has a commuted twin
in train. Within a split, `get(level, index)` walks a permutation seeded by (seed, level, split), so a stream
is reproducible from (seed, level, index).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from cuma_env.problems import LEVELS, Problem

SPLITS = ("train", "validation", "test")
# a problem's bucket is its hash modulo SPLIT_MODULUS; these buckets are held out (the rest is train)
SPLIT_MODULUS = 10
HELD_OUT_BUCKETS = {"validation": (1,), "test": (0, 5)}  # one in ten; two in ten (test's share before the re-keying)

# (operand ranges, operator signs after the first operand)
_LADDER: dict[int, tuple[tuple[range, ...], tuple[str, ...]]] = {
    1: ((range(0, 10), range(0, 10)), ("+",)),
    2: ((range(10, 100), range(0, 10)), ("+",)),
    3: ((range(10, 100), range(10, 100)), ("+",)),
    4: ((range(10, 100), range(10, 100)), ("-",)),
    5: ((range(10, 100), range(10, 100), range(10, 100)), ("+", "-")),
}


def expression(operands: tuple[int, ...], level: int) -> str:
    """`23 + 45 - 17` for operands (23, 45, 17) at a level whose signs are (+, -)."""
    signs = _LADDER[level][1]
    text = str(operands[0])
    for sign, value in zip(signs, operands[1:]):
        text += f" {sign} {value}"
    return text


def evaluate(operands: tuple[int, ...], level: int) -> int:
    total = operands[0]
    for sign, value in zip(_LADDER[level][1], operands[1:]):
        total = total + value if sign == "+" else total - value
    return total


def _split_hash(grid: np.ndarray) -> np.ndarray:
    """A fixed integer hash per operand tuple (rows of `grid`, in the order given); seed-independent by design."""
    h = np.full(grid.shape[0], 2166136261, dtype=np.uint64)
    for column in grid.T:
        h = (h ^ column.astype(np.uint64)) * np.uint64(16777619) % np.uint64(2**32)
    return (h * np.uint64(2654435761) % np.uint64(2**32)) >> np.uint64(7)


def split_of(grid: np.ndarray) -> np.ndarray:
    """The split index (into SPLITS) of each operand tuple (rows of `grid`): a hash of the sorted operands,
    so every reordering of a tuple gets the same split."""
    bucket = _split_hash(np.sort(grid, axis=1)) % np.uint64(SPLIT_MODULUS)
    index = np.full(grid.shape[0], SPLITS.index("train"), dtype=np.int64)
    for split, buckets in HELD_OUT_BUCKETS.items():
        index[np.isin(bucket, np.array(buckets, dtype=np.uint64))] = SPLITS.index(split)
    return index


def level_grid(level: int) -> np.ndarray:
    """Every operand tuple of a level, one per row, in lexicographic order."""
    ranges, _ = _LADDER[level]
    axes = np.meshgrid(*[np.arange(r.start, r.stop) for r in ranges], indexing="ij")
    return np.stack([a.reshape(-1) for a in axes], axis=1)


@lru_cache(maxsize=64)
def _split_operands(level: int, split: str, seed: int) -> np.ndarray:
    grid = level_grid(level)
    chosen = grid[split_of(grid) == SPLITS.index(split)]
    order = np.random.default_rng([seed, level, SPLITS.index(split)]).permutation(len(chosen))
    return chosen[order]


class ArithmeticSource:
    """The procedural family as a `ProblemSource` (finite per level and split, seeded order)."""

    def __init__(self, split: str = "train", seed: int = 0, levels: tuple[int, ...] = LEVELS):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        unknown = [lv for lv in levels if lv not in _LADDER]
        if unknown or not levels:
            raise ValueError(f"arithmetic levels must be a non-empty subset of {LEVELS}, got {tuple(levels)!r}")
        self.name = "arith"
        self.split = split
        self.seed = int(seed)
        self._levels = tuple(sorted(set(levels)))

    @property
    def levels(self) -> tuple[int, ...]:
        return self._levels

    def size(self, level: int | None) -> int:
        return len(self._operands(level))

    def get(self, level: int | None, index: int) -> Problem:
        table = self._operands(level)
        if not 0 <= index < len(table):
            raise IndexError(f"arith level {level} ({self.split}): index {index} out of range 0..{len(table) - 1}")
        operands = tuple(int(v) for v in table[index])
        text = expression(operands, level)
        return Problem(
            id=f"arith/L{level}/{text.replace(' ', '')}",
            prompt=f"What is {text}?",
            level=level,
            source="arith",
            answer=str(evaluate(operands, level)),
            meta={"split": self.split, "operands": list(operands)},
        )

    def _operands(self, level: int | None) -> np.ndarray:
        if level not in self._levels:
            raise KeyError(f"arith source has levels {self._levels}, not {level!r}")
        return _split_operands(level, self.split, self.seed)

    def __repr__(self) -> str:
        return f"ArithmeticSource(split={self.split!r}, seed={self.seed}, levels={self._levels})"
