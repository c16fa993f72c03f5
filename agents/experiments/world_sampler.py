"""Held-out worlds drawn from a declared distribution, not picked: `cuma study --worlds sampled:N[:FILE]`.

    dist = load_distribution()                       # agents/experiments/study_worlds/distribution.yaml
    draw_world(dist, 3)                              # draw03: a pure function of (the file, its draw_seed, 3)
    worlds, record = select_worlds(dist, 12, measure)  # draws 1.., the rule's rejects replaced by the next draws

A distribution file declares, before any draw, a range per TinyBaseConfig field, a fixed `draw_seed` and the
replacement rule (`agents.experiments.world_rule`). Each field of draw i is read from its own number,
sha256(draw_seed, i, field): no RNG library's stream, so a draw never moves with numpy's version or with the
other fields declared. Field specs (one kind per field):

    seed: {integer: [1, 99999]}                       # whole numbers lo..hi (optional step)
    reasoning_share: {uniform: [0.3, 0.6], decimals: 2}
    unanswered_share: {per_level: [{uniform: [0, 0.05]}, ...]}   # one spec per level 1-5
    architecture:                                     # a name that is no TinyBaseConfig field: a joint choice
      choice: [{hidden_size: 128, intermediate_size: 512, num_layers: 2}, ...]
      weights: [2, 1, 1]                              # optional, for any choice

docs/worlds.md has the shipped distribution's ranges and rule, and why.
"""

from __future__ import annotations

import difflib
import hashlib
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agents.experiments.world_rule import ReplacementRule, measure_base
from agents.experiments.worlds import BASE_KEYS, World, WorldError, parse_world, read_yaml_file
from agents.tiny.config import TinyBaseConfig
from cuma_env.problems import LEVELS

SHIPPED_DISTRIBUTION = Path(__file__).parent / "study_worlds" / "distribution.yaml"
DISTRIBUTION_KEYS = ("name", "description", "draw_seed", "seeds", "fields", "replace")
KINDS = ("integer", "uniform", "choice", "per_level")
SAMPLED = "sampled"
_REPO = Path(__file__).resolve().parents[2]
_LABELS = {"reasoning_share": "worked steps", "unanswered_share": "unanswered", "steps": "warm-up steps",
           "hidden_size": "width", "intermediate_size": "mlp", "num_layers": "layers"}  # a draw's description


@dataclass(frozen=True)
class Distribution:
    """A loaded distribution file: what a draw reads (`fields`, `draw_seed`) and the rule that checks it."""

    source: str                      # the file, as records name it (repository-relative when inside it)
    sha256: str                      # of the file's bytes (first 16 hex): which version of it drew
    name: str
    description: str
    draw_seed: int
    fields: dict[str, dict[str, Any]]
    rule: ReplacementRule
    seeds: int | None = None         # RL seeds per drawn world (None: the held-out default)

    def identity(self) -> dict[str, Any]:
        return {"distribution": self.source, "name": self.name, "sha256": self.sha256, "draw_seed": self.draw_seed}


@dataclass(frozen=True)
class Sampled:
    """`--worlds sampled:N[:FILE]`: N held-out worlds to draw from a distribution."""

    n: int
    distribution: Distribution


# --- the distribution file -----------------------------------------------------------------------
def load_distribution(path: str | Path | None = None) -> Distribution:
    """A distribution file (default: the shipped one); a `WorldError` line naming the file and the fix."""
    path = Path(path) if path is not None else SHIPPED_DISTRIBUTION
    data = read_yaml_file(path, "distribution file", WorldError)
    where = str(path)
    if not isinstance(data, dict):
        raise WorldError(f"{where}: a distribution file is a mapping of {', '.join(DISTRIBUTION_KEYS)}")
    _no_unknown(data, DISTRIBUTION_KEYS, where, "")
    seed, seeds, fields = data.get("draw_seed"), data.get("seeds"), data.get("fields")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise WorldError(f"{where}: draw_seed must be a fixed non-negative whole number, got {seed!r}")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise WorldError(f"{where}: seeds must be a positive int (RL seeds per drawn world), got {seeds!r}")
    if not isinstance(fields, dict) or not fields:
        raise WorldError(f"{where}: fields must map TinyBaseConfig fields (or a joint choice's name) to their specs")
    claimed: dict[str, str] = {}
    for name, spec in fields.items():
        for key in _check_field(str(name), spec, f"{where}: fields.{name}"):
            if key in claimed:
                raise WorldError(f"{where}: {key} is drawn by both fields.{claimed[key]} and fields.{name}")
            claimed[key] = str(name)
    if "replace" not in data:
        raise WorldError(f"{where}: declare the replacement rule (replace: thresholds on the base's validation "
                         "numbers) with the distribution, before any draw")
    rule = ReplacementRule.from_dict(data["replace"], where)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    description = " ".join(str(data.get("description", "")).split())
    return Distribution(_source(path), digest, str(data.get("name", "")), description, seed, dict(fields), rule, seeds)


def _source(path: Path) -> str:
    """A distribution file as records name it: repository-relative inside the repository, else as given."""
    resolved = Path(path).resolve()
    return resolved.relative_to(_REPO).as_posix() if resolved.is_relative_to(_REPO) else str(path)


def _no_unknown(data: dict, known: Sequence[str], where: str, what: str) -> None:
    unknown = [k for k in data if k not in known]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        raise WorldError(f"{where}: unknown key {unknown[0]!r}{what}{hint}")


def _check_field(name: str, spec: Any, where: str) -> list[str]:
    """Check one field's spec (kinds, ranges, every extreme a valid TinyBaseConfig); return the fields it sets."""
    if name not in BASE_KEYS:
        options = spec.get("choice") if isinstance(spec, dict) else None
        if not isinstance(options, list) or not options or not all(isinstance(o, dict) and o for o in options):
            close = difflib.get_close_matches(name, BASE_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise WorldError(f"{where}: {name!r} is no TinyBaseConfig field{hint}; a joint draw of several fields "
                             "is a choice of mappings of fields")
        _check_spec(spec, where, scalar=False)
        for option in options:
            _no_unknown(option, BASE_KEYS, where, " in a choice")
            _valid_config(option, where)
        return sorted({k for o in options for k in o})
    if isinstance(spec, dict) and "per_level" in spec:
        items = spec["per_level"]
        if name != "unanswered_share" or set(spec) != {"per_level"} or not isinstance(items, list) \
                or len(items) != len(LEVELS):
            raise WorldError(f"{where}: per_level is for unanswered_share: {len(LEVELS)} specs, one per level")
        extremes = [_check_spec(item, f"{where}[{i}]") for i, item in enumerate(items)]
        for pick in (0, -1):
            _valid_config({name: [e[pick] for e in extremes]}, where)
        return [name]
    for value in _check_spec(spec, where):
        _valid_config({name: value}, where)
    return [name]


def _check_spec(spec: Any, where: str, scalar: bool = True) -> list[Any]:
    """One kind and its options; returns the extreme values (to check them against TinyBaseConfig)."""
    kinds = [k for k in KINDS if isinstance(spec, dict) and k in spec and k != "per_level"]
    if len(kinds) != 1:
        raise WorldError(f"{where}: expected one of integer: [lo, hi], uniform: [lo, hi], choice: [...], got {spec!r}")
    kind, args = kinds[0], spec[kinds[0]]
    options = {"integer": ("step",), "uniform": ("decimals",), "choice": ("weights",)}[kind]
    _no_unknown({k: v for k, v in spec.items() if k != kind}, options, where, f" for {kind}")
    if kind == "choice":
        weights = spec.get("weights", [1] * len(args) if isinstance(args, list) else None)
        if not isinstance(args, list) or not args or not isinstance(weights, list) or len(weights) != len(args) \
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in weights) \
                or not sum(weights) > 0:
            raise WorldError(f"{where}: choice needs a non-empty list, and weights (if given) one >= 0 per option")
        return list(args)
    numeric = isinstance(args, list) and len(args) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in args) and args[0] <= args[1]
    if not numeric or (kind == "integer" and not all(isinstance(v, int) for v in args)):
        whole = " (whole numbers)" if kind == "integer" else ""
        raise WorldError(f"{where}: {kind} needs [lo, hi] with lo <= hi{whole}, got {args!r}")
    option = spec.get("step", 1) if kind == "integer" else spec.get("decimals", 2)
    if isinstance(option, bool) or not isinstance(option, int) or option < (1 if kind == "integer" else 0):
        raise WorldError(f"{where}: {options[0]} must be a whole number, got {option!r}")
    return list(args)


def _valid_config(changes: dict[str, Any], where: str) -> None:
    try:
        TinyBaseConfig.from_dict({**TinyBaseConfig().to_dict(), **changes})
    except (TypeError, ValueError) as exc:
        raise WorldError(f"{where}: {' '.join(str(exc).split())}") from None


# --- drawing -------------------------------------------------------------------------------------
def unit(draw_seed: int, index: int, key: str) -> float:
    """A number in [0, 1) that depends on (draw_seed, index, key) only: the first 8 bytes of their sha256."""
    digest = hashlib.sha256(f"{draw_seed}:{index}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def draw_value(spec: dict[str, Any], u: float) -> Any:
    """The value of a (checked) scalar spec at the point `u` of [0, 1)."""
    if "choice" in spec:
        options = spec["choice"]
        weights = spec.get("weights", [1] * len(options))
        target, total = u * sum(weights), 0.0
        for option, weight in zip(options, weights):
            total += weight
            if target < total:
                return option
        return options[-1]
    if "integer" in spec:
        lo, hi = spec["integer"]
        step = spec.get("step", 1)
        return lo + step * int(u * ((hi - lo) // step + 1))
    lo, hi = spec["uniform"]
    return min(max(round(lo + u * (hi - lo), spec.get("decimals", 2)), lo), hi)


def draw_world(dist: Distribution, index: int) -> World:
    """Draw `index` (1, 2, ...) of the distribution: a held-out world named `draw<index>` (two digits at least)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise ValueError(f"draw indices start at 1, got {index!r}")
    base: dict[str, Any] = {}
    for name, spec in dist.fields.items():
        if "per_level" in spec:
            base[name] = [draw_value(s, unit(dist.draw_seed, index, f"{name}[{i}]"))
                          for i, s in enumerate(spec["per_level"])]
        elif name in BASE_KEYS:
            base[name] = draw_value(spec, unit(dist.draw_seed, index, name))
        else:
            base.update(draw_value(spec, unit(dist.draw_seed, index, name)))
    shown = ", ".join(f"{_LABELS.get(k, k)} {'/'.join(f'{x:g}' for x in v) if isinstance(v, list) else v}"
                      for k, v in base.items())
    entry = {"name": f"draw{index:02d}", "role": "held_out", **base,
             "description": f"draw {index} of {dist.name or dist.source} (draw seed {dist.draw_seed}): {shown}",
             "drawn": {"index": index, **dist.identity()}}
    if dist.seeds is not None:
        entry["seeds"] = dist.seeds
    return parse_world(entry, f"{dist.source}: draw {index}")


def select_worlds(dist: Distribution, n: int, measure: Callable[[World], dict[str, Any] | None]
                  ) -> tuple[list[World], dict[str, Any]]:
    """The first `n` draws the rule keeps, in draw order, and the record of the draw (what was replaced and why).

    `measure(world)` gives its base's numbers (`world_rule.measure_base`), or None where they are not known yet
    (a dry run): such a draw is kept for now and listed as unchecked. A draw the rule rejects is replaced by the
    next one; more than `max_replaced` replacements is a `WorldError` (the distribution mostly misses the rule).
    """
    if n < 1:
        raise WorldError(f"{SAMPLED}:N needs N >= 1 held-out worlds, got {n}")
    rule, kept, replaced, unchecked, index = dist.rule, [], [], [], 0
    while len(kept) < n:
        index += 1
        world = draw_world(dist, index)
        measured = measure(world)
        if measured is None:
            unchecked.append(world.name)
            kept.append(world)
            continue
        check = rule.check(measured)
        if check["verdict"] == "kept":
            kept.append(replace(world, drawn={**world.drawn, "check": check}))
            continue
        replaced.append({"draw": index, "name": world.name, "reason": check["reason"], "measured": check,
                         "base": dict(world.base)})
        if len(replaced) > rule.max_replaced:
            raise WorldError(f"{dist.source}: {len(replaced)} of {index} draws replaced (max_replaced "
                             f"{rule.max_replaced}): the distribution mostly misses its rule ({rule.describe()}); "
                             "revise it in a new file")
    record = {**dist.identity(), "description": dist.description, "n": n, "draws": index, "rule": rule.to_dict(),
              "checked": not unchecked,
              "replaced": replaced, "unchecked": unchecked}
    return kept, record


def describe_record(record: dict[str, Any], pending: bool = True) -> str:
    """Lines for `--dry-run`: where the worlds come from, the rule, what it replaced, what it has yet to check
    (`pending`: the study checks them as it builds their bases; else they come unchecked from a file)."""
    rule = ReplacementRule(**{**record["rule"], "levels": tuple(record["rule"]["levels"])})
    lines = [f"  drawn: draws 1-{record['draws']} of {record['distribution']} (sha256 {record['sha256']}, draw seed "
             f"{record['draw_seed']}); a draw is replaced by the next one when its base's {rule.describe()}"]
    lines += [f"    replaced {r['name']}: {r['reason']}" for r in record["replaced"]]
    if record["unchecked"]:
        state = ("not checked yet (their bases are built and checked when the study runs)" if pending else
                 "NOT CHECKED by the rule (the file was written by --dry-run; write it again without it)")
        lines.append(f"    {state}: {', '.join(record['unchecked'])}")
    return "\n".join(lines)


# --- the command line and the study --------------------------------------------------------------
def parse_worlds_arg(text: str | Path | None) -> Path | Sampled | None:
    """`--worlds`: a world file, or `sampled:N` / `sampled:N:FILE` (N worlds drawn from the shipped distribution
    or FILE); a `WorldError` line for a bad N or a distribution file that cannot be used."""
    if text is None or isinstance(text, Path) or not str(text).startswith(f"{SAMPLED}:"):
        return None if text is None else Path(text)
    _, count, *rest = str(text).split(":", 2)
    try:
        n = int(count)
    except ValueError:
        raise WorldError(f"--worlds {SAMPLED}:N[:FILE] needs a whole number N of worlds to draw, got {count!r}"
                         ) from None
    if n < 1:
        raise WorldError(f"--worlds {SAMPLED}:N[:FILE] needs N >= 1 worlds to draw, got {n}")
    return Sampled(n, load_distribution(rest[0] if rest and rest[0] else None))


def study_worlds(spec: str | Path | None, quick: bool = False
                 ) -> tuple[list[World], Sampled | None, dict[str, Any] | None]:
    """(worlds, what is still to check, the draw's record) of `--worlds`. Drawn worlds come as far as the cache
    knows (draws whose bases are built and measured are checked, the others kept for now and checked by
    `resolve_plan` when the study builds them); `quick` draws one."""
    from agents.experiments.worlds import load_world_file

    parsed = parse_worlds_arg(spec)
    if not isinstance(parsed, Sampled):
        worlds, drawn = load_world_file(parsed)
        return worlds, None, drawn
    sampled = replace(parsed, n=1) if quick else parsed
    worlds, drawn = select_worlds(sampled.distribution, sampled.n, cached_measure(sampled.distribution.rule))
    return worlds, sampled, drawn


def cached_measure(rule: ReplacementRule) -> Callable[[World], dict[str, Any] | None]:
    """`measure` that builds nothing: the numbers cached with a base already built, else None."""
    return lambda world: measure_base(world, rule, build=False)


def resolve_plan(plan, log: Callable[[str], None] = print, progress: bool = True, jobs: int = 1):
    """A plan (`agents.experiments.study.StudyPlan`) whose drawn worlds are checked: each draw's base built
    (cached), measured on validation, and replaced by the next draw where the rule says so. `jobs` > 1: the
    bases are built `jobs` at a time first (`world_builds.prebuild`: the first N draws, then, where a draw is
    replaced, the next `jobs` draws at once); the rule's verdicts are the same."""
    from agents.experiments.world_builds import prebuild

    sampled: Sampled = plan.sampled
    dist, rule = sampled.distribution, sampled.distribution.rule
    prebuild([draw_world(dist, i) for i in range(1, sampled.n + 1)], rule, jobs=jobs, log=log)

    def measure(world: World) -> dict[str, Any]:
        index = world.drawn["index"]
        prebuild([draw_world(dist, i) for i in range(index, index + jobs)], rule, jobs=jobs, log=log)
        measured = measure_base(world, rule, build=True, progress=progress, log=log)
        reason = rule.verdict(measured)
        verdict = f"replaced, {reason}" if reason else f"kept, score {rule.score(measured):.3f}"
        log(f"drawn world {world.name}: {verdict}")
        return measured

    worlds, record = select_worlds(sampled.distribution, sampled.n, measure)
    return replace(plan, worlds=tuple(worlds), sampled=None, drawn=record)


def write_world_file(path: str | Path, worlds: Sequence[World], record: dict[str, Any]) -> Path:
    """Write the drawn worlds (and the record: rule, replaced draws) as a world file `--worlds FILE` reads back."""
    import yaml

    path = Path(path)
    entries = []
    for world in worlds:
        entry = {"name": world.name, "role": world.role, "seeds": world.seeds, **world.base,
                 "description": world.description}
        if world.drawn is not None:
            entry["drawn"] = world.drawn
        entries.append(entry)
    state = ("every draw checked by the rule" if record["checked"] else
             f"NOT CHECKED by the rule yet: {', '.join(record['unchecked'])} (written by --dry-run; write it again "
             "without --dry-run once their bases are built)")
    shipped = record["distribution"] == _source(SHIPPED_DISTRIBUTION)
    spec = f"{SAMPLED}:{record['n']}" + ("" if shipped else f":{record['distribution']}")
    text = (f"{len(worlds)} held-out worlds drawn from {record['distribution']} (sha256 {record['sha256']}, draw seed "
            f"{record['draw_seed']}), written by `cuma study --worlds {spec} --write-worlds` on "
            f"{time.strftime('%Y-%m-%d')}; {state}. Read back with `cuma study --worlds {path.name}`; docs/worlds.md "
            "explains the distribution and the replacement rule.")
    header = "".join(f"# {line}\n" for line in textwrap.wrap(text, 110))
    body = yaml.safe_dump({"drawn": record, "worlds": entries}, sort_keys=False, default_flow_style=None, width=110)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body)
    return path


__all__ = ["SHIPPED_DISTRIBUTION", "Distribution", "Sampled", "cached_measure", "describe_record", "draw_value",
           "draw_world", "load_distribution", "parse_worlds_arg", "resolve_plan", "select_worlds", "study_worlds",
           "unit", "write_world_file"]
