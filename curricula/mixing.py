"""Curated mixes for the curriculum: several problem sources behind one `ProblemSource`, levels by measurement.

    from curricula.mixing import MixedSource, measured_source, skewed_pool, top_up
    pool = skewed_pool(ArithmeticSource("train"), MATH_LEVEL_COUNTS, total=1000)   # few easy problems, like MATH
    extra = measured_source("cal/calibrated.jsonl")         # `cuma calibrate` output, binned by measured level
    topped = top_up(pool, extra, levels=(1, 2))             # the tiny-scale "curated data" arm
    mix = MixedSource("pool+curated", [(pool, 1.0), (extra, {1: 0.5, 2: 0.5})])
    LevelSampler(mix, seed=0)                               # the curricula's sampler works on any source

`MixedSource` rule, per level k (only the parts that serve k take part; a part's weight may be one number
for every level or a mapping level -> weight, a level missing from the mapping leaving the part out there):

- `epoch="balanced"` (default): part i gets a quota q_i of slots, q_i proportional to its weight w_i
  (largest-remainder rounding), with the level's length L = max_i ceil(n_i * W / w_i) (W = sum of weights,
  n_i = part size) the smallest one that gives every part at least n_i slots. The r-th slot of part i
  (r = 0..q_i-1) sits at time (r + 0.5) / q_i; `get(k, index)` is the index-th slot in time order (ties:
  the order the parts were given) and returns item r mod n_i of part i. So *every* window of the sequence,
  and every full epoch whatever order a sampler walks it in (LevelSampler shuffles), draws the parts in
  proportion to their weights; every item is drawn at least once per epoch; an over-weighted part repeats
  items. With weights proportional to sizes (weight `None` means "my size"), L = sum of sizes and each
  item appears exactly once: the plain union.
- `epoch="sum"`: L = sum of sizes, every item exactly once (a bijection). The r-th item of part i sits at
  time (r + 0.5) / w_i; walking index 0, 1, ... draws the parts in proportion to their weights until one
  runs out, then the rest follow. A sampler that shuffles whole epochs then sees each part in proportion to
  its *size*: use it only with in-order walks (`LevelSampler(shuffle=False)`).

Parts must be finite at the levels they serve (`size(level)` not None).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cuma_env.datasets import read_jsonl
from cuma_env.problems import LEVELS, PoolSource, Problem, ProblemSource

# MATH's 12k training pool by level (math/prm800k_train_12k.jsonl; the paper cites these counts as the reason
# for curated data): few easy problems.
MATH_LEVEL_COUNTS: dict[int, int] = {1: 958, 2: 2152, 3: 2618, 4: 2776, 5: 3494}
EPOCHS = ("balanced", "sum")
Weight = float | Mapping[int, float] | None

__all__ = ["EPOCHS", "MATH_LEVEL_COUNTS", "MixedSource", "load_curated_source", "measured_source",
           "skewed_pool", "top_up"]


def _check_weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: a weight must be a finite number > 0, got {value!r}")
    return float(value)


class MixedSource:
    """A weighted union of `ProblemSource`s (see the module docstring for the exact rule)."""

    def __init__(self, name: str, parts: Sequence[tuple[ProblemSource, Weight]], *, epoch: str = "balanced"):
        if epoch not in EPOCHS:
            raise ValueError(f"epoch must be one of {EPOCHS}, got {epoch!r}")
        parts = list(parts)
        if not parts:
            raise ValueError(f"mixed source {name!r} needs at least one (source, weight) part")
        self.name = name
        self.epoch = epoch
        self._parts: list[tuple[ProblemSource, dict[int | None, float]]] = []
        for i, part in enumerate(parts):
            if not (isinstance(part, tuple) and len(part) == 2):
                raise ValueError(f"mixed source {name!r}: part {i} must be a (source, weight) pair, got {part!r}")
            source, weight = part
            if not isinstance(source, ProblemSource):
                raise TypeError(f"mixed source {name!r}: part {i} is not a ProblemSource: {source!r}")
            where = f"mixed source {name!r} part {i} ({getattr(source, 'name', '?')})"
            per_level: dict[int | None, float] = {}
            for level in source.levels:
                size = source.size(level)
                if size is None:
                    raise ValueError(f"{where}: level {level} is unbounded; MixedSource needs finite parts")
                if size < 1:
                    continue
                if weight is None:
                    per_level[level] = float(size)
                elif isinstance(weight, Mapping):
                    if level in weight:
                        per_level[level] = _check_weight(weight[level], f"{where} level {level}")
                else:
                    per_level[level] = _check_weight(weight, where)
            if isinstance(weight, Mapping):
                unknown = sorted(set(weight) - set(source.levels), key=str)
                if unknown:
                    raise ValueError(f"{where}: weights name levels {unknown} the source does not serve "
                                     f"(it serves {tuple(source.levels)})")
            self._parts.append((source, per_level))
        served = {lv for _, w in self._parts for lv in w}
        if not served:
            raise ValueError(f"mixed source {name!r}: no part serves any level")
        self._levels = tuple(sorted(served, key=lambda lv: (lv is None, lv or 0)))
        self._tables: dict[int | None, tuple[np.ndarray, np.ndarray]] = {}

    # --- ProblemSource ------------------------------------------------------------------------------
    @property
    def levels(self) -> tuple[int | None, ...]:
        return self._levels

    def size(self, level: int | None) -> int:
        return len(self._table(level)[0])

    def get(self, level: int | None, index: int) -> Problem:
        owners, items = self._table(level)
        if not 0 <= index < len(owners):
            raise IndexError(f"source {self.name!r} level {level}: index {index} out of range 0..{len(owners) - 1}")
        return self._parts[int(owners[index])][0].get(level, int(items[index]))

    # --- introspection ------------------------------------------------------------------------------
    def shares(self, level: int | None) -> dict[str, float]:
        """Share of the level's slots owned by each part (keyed `i:name`)."""
        owners, _ = self._table(level)
        counts = np.bincount(owners, minlength=len(self._parts))
        return {f"{i}:{getattr(s, 'name', '?')}": counts[i] / len(owners) for i, (s, w) in enumerate(self._parts)
                if level in w}

    def __repr__(self) -> str:
        parts = ", ".join(f"{getattr(s, 'name', '?')}" for s, _ in self._parts)
        return f"MixedSource({self.name!r}, [{parts}], epoch={self.epoch!r}, levels={self._levels})"

    # --- the rule -----------------------------------------------------------------------------------
    def _table(self, level: int | None) -> tuple[np.ndarray, np.ndarray]:
        table = self._tables.get(level)
        if table is not None:
            return table
        if level not in self._levels:
            raise KeyError(f"source {self.name!r} has no problems at level {level!r}; its levels are {self._levels}")
        active = [(i, src.size(level), w[level]) for i, (src, w) in enumerate(self._parts) if level in w]
        sizes = np.array([n for _, n, _ in active], dtype=np.int64)
        weights = np.array([w for _, _, w in active], dtype=np.float64)
        if self.epoch == "sum":
            quotas, rates = sizes, weights
        else:
            total_w = weights.sum()
            length = int(max(math.ceil(n * total_w / w - 1e-9) for n, w in zip(sizes, weights)))
            exact = length * weights / total_w
            quotas = np.floor(exact + 1e-9).astype(np.int64)
            short = length - int(quotas.sum())
            if short > 0:  # largest remainder, ties to the earlier part
                order = sorted(range(len(active)), key=lambda j: (-(exact[j] - quotas[j]), j))
                quotas[order[:short]] += 1
            quotas = np.maximum(quotas, sizes)
            rates = quotas.astype(np.float64)
        owners, times, items = [], [], []
        for (part, size, _), q, rate in zip(active, quotas, rates):
            r = np.arange(int(q), dtype=np.int64)
            owners.append(np.full(int(q), part, dtype=np.int64))
            times.append((r + 0.5) / rate)
            items.append(r % size)
        owners_a, times_a, items_a = np.concatenate(owners), np.concatenate(times), np.concatenate(items)
        order = np.lexsort((owners_a, times_a))  # by time, then part order
        table = (owners_a[order], items_a[order])
        self._tables[level] = table
        return table


# --- curated / calibrated files ---------------------------------------------------------------------
def load_curated_source(path: str | os.PathLike, level_field: str = "level", *, name: str | None = None,
                        skip_missing: bool = True) -> PoolSource:
    """A `PoolSource` from a JSONL in the pools' layout (`problem`, `level`, `answer`, `id`, ...).

    `level_field="measured_level"` bins by the level `cuma calibrate` measured instead of the requested one.
    Records whose level is null are skipped (`skip_missing=False`: an error); a record without the field at
    all is an error that says where. Every other field goes to `Problem.meta`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"curated file not found: {path}")
    name = name or path.stem
    problems: list[Problem] = []
    for number, record in enumerate(read_jsonl(path), 1):
        if level_field not in record:
            hint = " (run `cuma calibrate` on the file first)" if level_field == "measured_level" else ""
            raise ValueError(f"{path}:{number}: record has no {level_field!r} field{hint}")
        level = record[level_field]
        if level is None:
            if skip_missing:
                continue
            raise ValueError(f"{path}:{number}: {level_field} is null")
        if isinstance(level, bool) or not isinstance(level, int) or level not in LEVELS:
            raise ValueError(f"{path}:{number}: {level_field} must be one of {LEVELS}, got {level!r}")
        text = record.get("problem", record.get("question"))
        if not isinstance(text, str):
            raise ValueError(f"{path}:{number}: record has no 'problem' text")
        rid = record.get("id") or record.get("unique_id") or f"{name}/{number}"
        answer = record.get("answer")
        meta = {k: v for k, v in record.items() if k not in ("id", "problem", "question", "answer", "source")}
        problems.append(Problem(id=str(rid), prompt=text, level=level, source=str(record.get("source") or name),
                                answer=None if answer is None else str(answer), meta=meta))
    if not problems:
        raise ValueError(f"{path}: no records with a {level_field!r}")
    return PoolSource(name, problems)


def measured_source(path: str | os.PathLike, *, name: str | None = None) -> PoolSource:
    """A calibrated JSONL (`cuma calibrate` output) binned by `measured_level`."""
    return load_curated_source(path, level_field="measured_level", name=name)


# --- the tiny-scale "curated data" ablation ---------------------------------------------------------
def _apportion(total: int, shares: Mapping[int, float]) -> dict[int, int]:
    whole = sum(shares.values())
    exact = {lv: total * s / whole for lv, s in shares.items()}
    counts = {lv: int(math.floor(v)) for lv, v in exact.items()}
    for lv in sorted(exact, key=lambda lv: (-(exact[lv] - counts[lv]), lv))[:total - sum(counts.values())]:
        counts[lv] += 1
    return counts


def skewed_pool(source: ProblemSource, shares: Mapping[int, float] | Sequence[float] = MATH_LEVEL_COUNTS, *,
                total: int = 1000, seed: int = 0, name: str | None = None) -> PoolSource:
    """A finite pool of `total` problems drawn from `source` with the level proportions `shares`.

    `shares` maps level -> weight (or lists weights for levels 1, 2, ...); the default is MATH's 12k pool
    (958/2152/2618/2776/3494), so `total=1000` gives 80/179/218/232/291. Level k's problems are the first
    count_k of a permutation seeded by (seed, k). A level that has fewer problems than asked is an error.
    """
    if not isinstance(shares, Mapping):
        shares = {lv: s for lv, s in zip(LEVELS, shares)}
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be a positive int, got {total!r}")
    if not shares:
        raise ValueError("shares must name at least one level")
    for lv, s in shares.items():
        if lv not in source.levels:
            raise ValueError(f"shares name level {lv!r}, which source {source.name!r} does not serve")
        _check_weight(s, f"share of level {lv}")
    problems: list[Problem] = []
    for level, count in sorted(_apportion(total, shares).items()):
        size = source.size(level)
        if size is not None and count > size:
            raise ValueError(f"skewed pool wants {count} problems at level {level}; "
                             f"source {source.name!r} has only {size}")
        if size is None:
            picks: Iterable[int] = range(count)
        else:
            picks = np.random.default_rng([seed, level]).permutation(size)[:count]
        problems.extend(source.get(level, int(i)) for i in picks)
    return PoolSource(name or f"{source.name}-skewed", problems)


def top_up(pool: PoolSource, extra: ProblemSource, levels: Sequence[int] = (1, 2), *,
           target: int | Mapping[int, int] | None = None, name: str | None = None) -> PoolSource:
    """`pool` plus problems of `extra` at `levels`, so each of those levels holds `target` problems.

    `target` defaults to the pool's largest level count (flattens the skew); a mapping sets it per level.
    Problems of `extra` are taken in its own order (`extra.get(level, 0)`, ...), skipping ids and prompt
    texts already in the pool. If `extra` runs out the level stays short (no error): see the result's repr.
    `extra` is usually `measured_source(calibrated.jsonl)`, so its levels are *measured* ones.
    """
    known_ids = {p.id for p in pool.problems()}
    known_text = {p.prompt for p in pool.problems()}
    default = max(pool.size(lv) for lv in pool.levels)
    added: list[Problem] = []
    for level in levels:
        want = (target.get(level, default) if isinstance(target, Mapping) else default if target is None
                else int(target))
        have = pool.size(level) if level in pool.levels else 0
        if level not in extra.levels or want <= have:
            continue
        size = extra.size(level)
        index = 0
        while have < want and (size is None or index < size):
            problem = extra.get(level, index)
            index += 1
            if problem.id in known_ids or problem.prompt in known_text:
                continue
            known_ids.add(problem.id)
            known_text.add(problem.prompt)
            added.append(problem)
            have += 1
    return PoolSource(name or f"{pool.name}+topup", [*pool.problems(), *added])
