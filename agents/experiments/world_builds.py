"""Drawn worlds' bases built and measured several at a time (`cuma study --worlds sampled:N --jobs J`).

    prebuild(worlds, rule, jobs=2, log=print)   # each base not cached yet: built and measured, J processes

Checking a draw means training its tiny base (minutes of one core) and measuring it on the rule's split.
The draws are independent, so they are built in parallel, one process and one thread each, like the study's
cells; the rule then reads them in draw order from the cache (`world_rule.measure_base`), so which draws are
kept or replaced, and every number, is what a serial run gives. A base shared by two draws is built once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agents.experiments.world_rule import ReplacementRule, measure_base
from agents.experiments.worlds import World


def build_and_measure(world: World, rule: ReplacementRule) -> dict[str, Any] | None:
    """Entry point of a worker process (one thread): the world's base built (cached) and measured."""
    from agents.experiments.reproduce import start_worker

    start_worker()
    return measure_base(world, rule, build=True, progress=False)


def unmeasured(worlds: Sequence[World], rule: ReplacementRule) -> list[World]:
    """The worlds whose base or numbers are not cached yet, one per base (two draws may share a base)."""
    from agents.tiny.cache import base_path

    todo, seen = [], set()
    for world in worlds:
        path = base_path(world.base_config())
        if path not in seen and measure_base(world, rule, build=False) is None:
            seen.add(path)
            todo.append(world)
    return todo


def prebuild(worlds: Sequence[World], rule: ReplacementRule, *, jobs: int,
             log: Callable[[str], None] = print) -> int:
    """Build and measure the worlds' uncached bases, `jobs` processes at a time; returns how many were built.
    With `jobs` 1, or one base to build, nothing happens here: the rule's serial pass builds it."""
    if jobs < 2:
        return 0
    todo = unmeasured(worlds, rule)
    if len(todo) < 2:
        return 0
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    log(f"building the bases of {', '.join(w.name for w in todo)} ({jobs} at a time; a tiny-base training run "
        "each: minutes) ...")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(build_and_measure, w, rule): w for w in todo}
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            log(f"built and measured the base of {futures[future].name} ({done} of {len(todo)})")
    return len(todo)


__all__ = ["build_and_measure", "prebuild", "unmeasured"]
