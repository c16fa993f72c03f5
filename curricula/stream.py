"""`CurriculumStream`: a schedule plus a level sampler, as the `cuma_env.ProblemStream` both faces accept.

    stream = CurriculumStream(make_schedule("agreement_gated"), ArithmeticSource(), seed=0)
    env = cuma_env.CuMaEnv("CuMa-Arith-v0", problem_stream=stream)          # Gymnasium face, or
    env = cuma_env.make_torchrl_env("CuMa-Arith-v0", problem_stream=stream)  # TorchRL face (its data source)

`next_problem()` draws a level from `schedule.level_weights()` with the stream's own seeded generator and a
problem of that level from the sampler; `observe(info)` turns the scored group's info into label-free
`EpisodeStats`, updates the schedule and, when the schedule asks for it and a probe hook was given, runs a
probe (`probe(level, problems) -> list[info-like dict]`, see `AgreementGated`). `state_dict()` is plain JSON
(schedule, sampler positions, generator state, counters): a restored stream draws exactly the problems the
uninterrupted one would have drawn. One stream may serve several environments (vector sub-envs): they then
share one curriculum and one sampler, so no problem repeats within an epoch across them.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from cuma_env.problems import Problem, ProblemSource
from curricula.sampler import PROBE_STREAM, TRAIN_STREAM, LevelSampler
from curricula.schedules import Schedule, make_schedule
from curricula.stats import stats_from_info

ProbeHook = Callable[[Any, Sequence[Problem]], Sequence[Mapping[str, Any]]]
STATE_VERSION = 1
_RNG_SALT = 0xC0FFEE  # keeps the level-choice generator apart from the sampler's permutations


class CurriculumStream:
    """Schedule-driven `ProblemStream`.

    Args:
        schedule: a `Schedule`, or a name / `{"name": ..., **kwargs}` for `make_schedule`.
        source: a `ProblemSource` (a `LevelSampler` is built over it) or a ready `LevelSampler`.
        seed: seeds the sampler and the level choice (default: the sampler's seed, 0 for a new one).
        probe: optional probe hook `probe(level, problems) -> list[info-like dict]`; without one the schedule
            is told probes are unavailable and gates on training statistics alone.
    """

    def __init__(self, schedule: Schedule | str | Mapping[str, Any], source: ProblemSource | LevelSampler, *,
                 seed: int | None = None, probe: ProbeHook | None = None):
        self.schedule = make_schedule(schedule)
        if isinstance(source, LevelSampler):
            self.sampler = source
            if seed is not None:
                self.sampler.reseed(seed)
        else:
            self.sampler = LevelSampler(source, seed=0 if seed is None else seed)
        if probe is not None and not callable(probe):
            raise TypeError(f"probe must be a callable probe(level, problems) -> list[dict], "
                            f"got {type(probe).__name__}")
        self.probe = probe
        self.schedule.bind(self.sampler.levels, probes=probe is not None)
        self._rng = self._new_rng(self.sampler.seed)
        self._initial_schedule = self.schedule.state_dict()
        self.drawn = self.observed = self.probes = 0
        self.last_problem: Problem | None = None
        self._lock = threading.RLock()
        self._owner: weakref.ref | None = None

    @classmethod
    def from_env(cls, env_id: str, schedule: Schedule | str | Mapping[str, Any] = "sequential", *,
                 split: str = "train", levels: Sequence[int] | None = None,
                 data_dir: str | os.PathLike | None = None, seed: int = 0, source_seed: int = 0,
                 probe: ProbeHook | None = None) -> CurriculumStream:
        """A stream over the problem source behind an environment id (`cuma_env.make_source`)."""
        from cuma_env.catalog import make_source

        source = make_source(env_id, split=split, levels=levels, data_dir=data_dir, seed=source_seed)
        return cls(schedule, source, seed=seed, probe=probe)

    @property
    def seed(self) -> int:
        return self.sampler.seed

    # --- ProblemStream ---------------------------------------------------------------------------
    def next_problem(self, level: Any = None) -> Problem:
        """The next training problem: of `level` if given, else of a level drawn from the schedule."""
        with self._lock:
            chosen = level is None
            if chosen:
                level = self._choose_level()
            problem = self.sampler.draw(level, TRAIN_STREAM)
            if chosen:
                self.schedule.on_draw(level)
            self.drawn += 1
            self.last_problem = problem
            return problem

    def observe(self, info: Mapping[str, Any]) -> None:
        """Feed one scored group's info (label keys are ignored) to the schedule; probe if it asks."""
        with self._lock:
            self.schedule.update(stats_from_info(info))
            self.observed += 1
            self._maybe_probe()

    def __iter__(self) -> Iterator[Problem]:
        """Endless `next_problem()` (e.g. the iterable behind a data loader)."""
        while True:
            yield self.next_problem()

    # --- views -----------------------------------------------------------------------------------
    def level_weights(self) -> dict[Any, float]:
        return self.schedule.level_weights()

    def summary(self) -> dict[str, Any]:
        """The schedule's summary plus the stream's counters (JSON-able; goes to `info['curriculum']`)."""
        return {**self.schedule.summary(), "drawn": self.drawn, "observed": self.observed, "probes": self.probes}

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        with self._lock:
            return _json_copy({"version": STATE_VERSION, "schedule": self.schedule.state_dict(),
                    "initial_schedule": self._initial_schedule, "sampler": self.sampler.state_dict(),
                    "rng": _jsonable_rng_state(self._rng), "drawn": self.drawn, "observed": self.observed,
                    "probes": self.probes})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"curriculum state version {state.get('version')!r}, expected {STATE_VERSION}")
        with self._lock:
            self.schedule.load_state_dict(state["schedule"])
            self.schedule.probes_available = self.probe is not None
            self._initial_schedule = _json_copy(state.get("initial_schedule", self._initial_schedule))
            self.sampler.load_state_dict(state["sampler"])
            self._rng = np.random.Generator(np.random.PCG64())
            self._rng.bit_generator.state = state["rng"]
            self.drawn, self.observed, self.probes = int(state["drawn"]), int(state["observed"]), int(state["probes"])

    def restart(self, seed: int | None = None) -> None:
        """Back to the start: the schedule's initial state, fresh sampler streams, and (optionally) a new seed."""
        with self._lock:
            seed = self.sampler.seed if seed is None else seed
            self.sampler.reseed(seed)
            self._rng = self._new_rng(self.sampler.seed)
            self.schedule.load_state_dict(self._initial_schedule)
            self.schedule.probes_available = self.probe is not None
            self.drawn = self.observed = self.probes = 0
            self.last_problem = None

    def claim(self, owner: Any) -> bool:
        """Register an environment wrapper; True for the first live one (the owner that may restart the stream)."""
        current = self._owner() if self._owner is not None else None
        if current is None or current is owner:
            self._owner = weakref.ref(owner)
            return True
        return False

    # --- internals -------------------------------------------------------------------------------
    @staticmethod
    def _new_rng(seed: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), _RNG_SALT])

    def _choose_level(self) -> Any:
        weights = self.schedule.level_weights()
        levels = [lv for lv in self.schedule.levels if weights.get(lv, 0.0) > 0.0]
        if not levels:
            raise RuntimeError(f"schedule {self.schedule.name!r} gave no level a positive weight: {weights}")
        u = float(self._rng.random()) * sum(weights[lv] for lv in levels)
        for lv in levels:
            u -= weights[lv]
            if u < 0.0:
                return lv
        return levels[-1]

    def _maybe_probe(self) -> None:
        if self.probe is None:
            return
        level = self.schedule.probe_request()
        if level is None:
            return
        size = int(getattr(self.schedule, "probe_size", 8))
        problems = self.sampler.draw_many(level, size, stream=PROBE_STREAM)
        results = list(self.probe(level, problems))
        if len(results) != len(problems):
            raise ValueError(f"probe hook returned {len(results)} results for {len(problems)} problems")
        stats = [stats_from_info({"level": p.level, "problem_id": p.id, **dict(r)}) for p, r in zip(problems, results)]
        self.probes += 1
        self.schedule.observe_probe(level, stats)

    def __getstate__(self) -> dict[str, Any]:  # copy/pickle without the lock and the owner reference
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_owner"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"CurriculumStream({self.schedule!r}, {self.sampler!r})"


def _json_copy(data: Any) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


def _jsonable_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    state = rng.bit_generator.state
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in state.items()}
