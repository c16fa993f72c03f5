"""The replacement rule of drawn worlds: a base too weak or too strong to tell arms apart is replaced by the next
draw, decided from numbers measured on the validation split before any cell of the world runs.

Why a rule at all: a world whose base answers almost nothing on levels 1-3 gives every label-free arm nothing
right to vote for, and one that answers almost everything leaves no room to gain; either adds a world to the
pool that says nothing about the arms. Declaring the rule in the distribution file, before any draw, keeps the
replacement from becoming a choice made after seeing results (docs/worlds.md gives the thresholds' reasons).

The measurement is the study's own base-arm evaluation (greedy pass@1 per level, the protocol's problems per
level, the base arm's config), on the validation split, so test is never read. It is cached in the base's cache
directory (`world_check-<split>-n<N>.json`, next to `cuma_base.json`), keyed by the weights' hash, so a base
is measured once however often it is drawn or checked.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agents.experiments.worlds import World, WorldError, model_path
from cuma_env.problems import LEVELS

RULE_KEYS = ("split", "n_per_level", "levels", "too_weak_below", "too_strong_above", "max_replaced")


@dataclass(frozen=True)
class ReplacementRule:
    """Replace a drawn world whose base's mean greedy pass@1 over `levels` (on `split`, `n_per_level` problems per
    level at most) is below `too_weak_below` or above `too_strong_above`; stop after `max_replaced` replacements
    (the distribution then mostly misses the rule: revise it, in a new file)."""

    split: str = "validation"
    n_per_level: int = 400
    levels: tuple[int, ...] = (1, 2, 3)
    too_weak_below: float = 0.25
    too_strong_above: float = 0.90
    max_replaced: int = 10

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ReplacementRule:
        if not isinstance(data, dict):
            raise WorldError(f"{where}: replace must be a mapping of {', '.join(RULE_KEYS)}, got {data!r}")
        unknown = [k for k in data if k not in RULE_KEYS]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), RULE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(RULE_KEYS)}"
            raise WorldError(f"{where}: unknown key {unknown[0]!r} in replace{hint}")
        values = {**asdict(cls()), **data}
        levels = values["levels"]
        if not isinstance(levels, (list, tuple)) or not levels or not set(levels) <= set(LEVELS) \
                or len(set(levels)) != len(levels):
            raise WorldError(f"{where}: replace.levels must be distinct levels of {list(LEVELS)}, got {levels!r}")
        if values["split"] != "validation":
            raise WorldError(f"{where}: replace.split must be validation (test is read only by a study's final "
                             f"evaluation), got {values['split']!r}")
        for key in ("n_per_level", "max_replaced"):
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "n_per_level" else 0):
                raise WorldError(f"{where}: replace.{key} must be a whole number (>= 1 for n_per_level), got {v!r}")
        low, high = values["too_weak_below"], values["too_strong_above"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in (low, high)) \
                or low >= high:
            raise WorldError(f"{where}: replace needs 0 <= too_weak_below < too_strong_above <= 1, got "
                             f"{low!r} and {high!r}")
        return cls(values["split"], values["n_per_level"], tuple(int(v) for v in levels), float(low), float(high),
                   values["max_replaced"])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "levels": list(self.levels)}

    def describe(self) -> str:
        levels = f"levels {self.levels[0]}-{self.levels[-1]}" if list(self.levels) == list(
            range(self.levels[0], self.levels[-1] + 1)) else "levels " + ",".join(map(str, self.levels))
        return (f"mean greedy pass@1 over {levels} on {self.split} (at most {self.n_per_level} problems per level) "
                f"is below {self.too_weak_below:g} or above {self.too_strong_above:g}")

    def score(self, measured: dict[str, Any]) -> float:
        """The number the rule reads: the mean over `levels` of the measured greedy pass@1."""
        greedy = measured["greedy"]
        return sum(float(greedy[str(lv)]) for lv in self.levels) / len(self.levels)

    def verdict(self, measured: dict[str, Any]) -> str | None:
        """Why the base is replaced (one line), or None when the world is kept."""
        score, name = self.score(measured), f"mean greedy over levels {','.join(map(str, self.levels))}"
        if score < self.too_weak_below:
            return f"too weak: {name} on {self.split} {score:.3f} < {self.too_weak_below:g}"
        if score > self.too_strong_above:
            return f"too strong: {name} on {self.split} {score:.3f} > {self.too_strong_above:g}"
        return None

    def check(self, measured: dict[str, Any]) -> dict[str, Any]:
        """What a drawn world records of its check: the numbers, the score, and the verdict."""
        reason = self.verdict(measured)
        return {"split": measured["split"], "n": dict(measured["n"]),
                "greedy": {k: round(float(v), 4) for k, v in measured["greedy"].items()},
                "score": round(self.score(measured), 4), "weights_sha256": str(measured.get("weights_sha256"))[:16],
                "verdict": "replaced" if reason else "kept", **({"reason": reason} if reason else {})}


def check_file(directory: Path, rule: ReplacementRule) -> Path:
    return Path(directory) / f"world_check-{rule.split}-n{rule.n_per_level}.json"


def measure_base(world: World, rule: ReplacementRule, *, build: bool = True, progress: bool = True,
                 log=None) -> dict[str, Any] | None:
    """The greedy pass@1 per level of the world's base on the rule's split, as the study's base arm measures it.

    `build`: build (or install) the base first and measure it if its numbers are not cached; else only read
    what is cached (None when the base or its numbers are not there: a dry run builds nothing).
    """
    from agents.tiny.cache import base_path, ensure_tiny_base, is_built, read_metadata

    if world.model:
        raise WorldError(f"world {world.name!r}: the replacement rule checks tiny bases, not the model {world.model}")
    config = world.base_config()
    if build and log is not None and not world.is_default_base and not is_built(base_path(config)):
        log(f"building the base of drawn world {world.name} (a tiny-base training run: minutes) ...")
    path = model_path(world, build=build, progress=progress)   # what the world's base-arm cells read
    directory = ensure_tiny_base(config, progress=progress) if build else base_path(config)
    if not is_built(directory):
        return None
    weights = read_metadata(directory).get("weights_sha256")
    file = check_file(directory, rule)
    try:
        cached = json.loads(file.read_text())
    except (OSError, ValueError):
        cached = None
    if cached is not None and cached.get("weights_sha256") == weights:
        return cached
    if not build:
        return None
    measured = {**greedy_on_split(world, path, rule), "weights_sha256": weights,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(measured, indent=1) + "\n")
    os.replace(tmp, file)  # atomic: a concurrent reader sees the whole file or none
    return measured


def greedy_on_split(world: World, path: str, rule: ReplacementRule) -> dict[str, Any]:
    """The study's base-arm evaluation (`study_cells.run_cell` of the arm `base`: its config, problems and
    batches) under the protocol's budget, on `rule.split`: {"split", "n_per_level", "n", "greedy", "eval_s"}."""
    from agents.experiments.reproduce import Budget
    from agents.experiments.study_cells import Cell, cell_config, evaluate_model

    config = cell_config(Cell(world, "base", 0), Budget(eval_every=0, eval_n_per_level=rule.n_per_level), path,
                         rule.split)
    started = time.perf_counter()
    result = evaluate_model(config, path, rule.split)
    levels = result["levels"]
    return {"split": rule.split, "n_per_level": rule.n_per_level,
            "n": {k: len(v["correct"]) for k, v in levels.items()},
            "greedy": {k: sum(v["correct"]) / len(v["correct"]) for k, v in levels.items()},
            "eval_s": round(time.perf_counter() - started, 2)}


__all__ = ["RULE_KEYS", "ReplacementRule", "check_file", "greedy_on_split", "measure_base"]
