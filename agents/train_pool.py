"""The training pool of a run: `env` config -> the `ProblemSource` the curriculum draws from.

    source = training_source(config.env)          # what `agents.rollout.Rollout` trains on

`env.pool.kind` (see `agents.config.PoolConfig`); `env.levels` restricts every kind, the held-out split is
never touched:
- `split` (default): the env id's train split, `cuma_env.catalog.make_source(env.id, "train", ...)`.
- `skewed`: `curricula.mixing.skewed_pool` of that split with MATH's level proportions
  (`MATH_LEVEL_COUNTS`, 958/2152/2618/2776/3494 of 12k), `env.pool.size` problems (default 750:
  60/134/164/174/218), seeded by `env.source_seed`: few easy problems, like a natural pool.
- `file`: a curated JSONL (`curricula.mixing.load_curated_source(path, level_field=...)`; `level_field:
  measured_level` bins a `cuma calibrate` output by measured level). `top_up: true` (every level) or a list
  of levels fills those levels from the train split up to the file's largest level (`curricula.mixing.top_up`).

The pool is rebuilt from the config alone, so `cuma train --resume` of a run trains on the same pool (a `file`
pool: as long as the file is unchanged). Problems are one `ConfigError` line.
"""

from __future__ import annotations

from typing import Any

from agents.config import ConfigError, EnvConfig
from cuma_env.problems import LEVELS, ProblemSource

SKEWED_POOL_SIZE = 750  # the level-1 bin (60 problems) fits the arith train split's 63 level-1 problems


def training_source(env: EnvConfig) -> ProblemSource:
    """The problems a run with this `env` section trains on."""
    from cuma_env.catalog import make_source

    pool = env.pool
    levels = tuple(env.levels) if env.levels is not None else None

    def split() -> ProblemSource:
        return make_source(env.id, "train", levels=levels, data_dir=env.data_dir, seed=env.source_seed)

    if pool.kind == "split":
        return split()
    if pool.kind == "skewed":
        return skewed_source(split(), size=pool.size, seed=env.source_seed)
    if pool.kind == "file":
        return file_source(pool.path, level_field=pool.level_field, levels=levels, top_up=pool.top_up,
                           split=split)
    raise ConfigError(f"env.pool.kind: must be one of split, skewed, file, got {pool.kind!r}")


def skewed_source(source: ProblemSource, *, size: int | None = None, seed: int = 0) -> ProblemSource:
    """`source` thinned to MATH's level proportions (over the levels it serves), `size` problems in all."""
    from curricula.mixing import MATH_LEVEL_COUNTS, skewed_pool

    if any(lv not in MATH_LEVEL_COUNTS for lv in source.levels):
        raise ConfigError(f"env.pool.kind: skewed needs levels in {LEVELS}; source {source.name!r} has "
                          f"{source.levels}")
    shares = {lv: MATH_LEVEL_COUNTS[lv] for lv in source.levels}
    try:
        return skewed_pool(source, shares, total=SKEWED_POOL_SIZE if size is None else size, seed=seed,
                           name=f"{source.name}-math-skewed")
    except ValueError as exc:
        raise ConfigError(f"env.pool: {_one_line(exc)}") from None


def file_source(path: str | None, *, level_field: str = "level", levels: tuple[int, ...] | None = None,
                top_up: bool | list[int] = False, split: Any = None) -> ProblemSource:
    """A curated JSONL restricted to `levels`, optionally topped up from `split()` (a callable)."""
    from curricula.mixing import load_curated_source
    from curricula.mixing import top_up as fill

    if path is None:
        raise ConfigError("env.pool.path: kind file needs a path to a curated JSONL (env.pool.path=FILE)")
    try:
        pool = load_curated_source(path, level_field=level_field)
    except FileNotFoundError:
        raise ConfigError(f"env.pool.path: file not found: {path}") from None
    except ValueError as exc:
        raise ConfigError(f"env.pool.path: {_one_line(exc)}") from None
    if levels is not None:
        kept = [p for p in pool.problems() if p.level in levels]
        if not kept:
            raise ConfigError(f"env.pool.path: {path} has no problems at env.levels {list(levels)} "
                              f"(its levels are {list(pool.levels)})")
        pool = type(pool)(pool.name, kept)
    if top_up:
        wanted = (levels or LEVELS) if top_up is True else [lv for lv in top_up if not levels or lv in levels]
        pool = fill(pool, split(), levels=tuple(wanted))
    missing = [lv for lv in levels or () if lv not in pool.levels]
    if missing:
        raise ConfigError(f"env.pool.path: {path} has no problems at level(s) {missing} of env.levels "
                          f"(its levels are {list(pool.levels)}; env.pool.top_up=true fills them from the split)")
    return pool


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
