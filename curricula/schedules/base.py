"""The one small interface every difficulty schedule offers.

A schedule answers "which level (or mixture of levels) should the next prompt come from?" and hears, after
each scored group, the group's label-free statistics (`curricula.stats.EpisodeStats`). It never sees a
label. It never draws problems or random numbers itself: a `curricula.CurriculumStream` samples a level
from `level_weights()` and a problem from its `LevelSampler`, so a schedule's state is a few counters and
windows, saved as plain JSON by `state_dict()`.

Probes: a schedule may ask for *probe groups* of another level (prompts sampled without training) through
`probe_request()`. The stream answers with `observe_probe(level, stats)` when the caller gave it a probe
hook `probe(level, problems) -> list[info-like dict]`; without a hook, `bind(..., probes=False)` tells the
schedule so and it decides from training statistics alone.

A "step" of a schedule is one `update`, i.e. one scored group (one prompt), not one optimizer step. The stream
also reports each prompt it serves (`on_draw`), which `Sequential` counts so that batched collection (draws
run one batch ahead of updates) still serves exactly N prompts of each level.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cuma_env.problems import LEVELS
from curricula.sampler import level_key, parse_level_key
from curricula.stats import EpisodeStats, stats_from_info

Level = int | None


def _json_copy(data: Any) -> Any:
    """A deep copy through JSON: proves the state is plain JSON and cuts every alias to live objects."""
    return json.loads(json.dumps(data, allow_nan=False))


def check_levels(levels: Sequence[Level]) -> tuple[Level, ...]:
    out = tuple(None if lv is None else int(lv) for lv in levels)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"levels must be a non-empty sequence of distinct levels, got {levels!r}")
    return out


def check_fraction(name: str, value: float, *, upper_open: bool = False) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0 if upper_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}, got {value!r}")
    return value


def staged_weights(levels: Sequence[Level], index: int, replay: float) -> dict[Level, float]:
    """One-hot on `levels[index]`, with a `replay` share spread evenly over the earlier levels."""
    weights = {lv: 0.0 for lv in levels}
    if index == 0 or replay <= 0.0:
        weights[levels[index]] = 1.0
        return weights
    weights[levels[index]] = 1.0 - replay
    for lv in levels[:index]:
        weights[lv] = replay / index
    return weights


class Schedule(ABC):
    """Base class: level bookkeeping, the JSON state envelope and the summary.

    Args:
        levels: the ordered levels (easiest first) this schedule moves over. None: the levels of the source
            it is bound to (`bind`), or `cuma_env.problems.LEVELS` when used unbound.

    Subclasses implement `level_weights`, `_update`, `config`, `_state`, `_load` (and, if they probe,
    `probe_request` / `observe_probe`).
    """

    name: ClassVar[str] = "schedule"

    def __init__(self, levels: Sequence[Level] | None = None):
        self._levels: tuple[Level, ...] | None = None if levels is None else check_levels(levels)
        self._explicit_levels = levels is not None
        self.steps = 0
        self.draws = 0
        self.probes_available = False
        self.bound = False

    # --- levels ----------------------------------------------------------------------------------
    @property
    def levels(self) -> tuple[Level, ...]:
        return self._levels if self._levels is not None else LEVELS

    def bind(self, levels: Sequence[Level], *, probes: bool = False) -> None:
        """Called by the stream: adopt the source's levels (if none were given) and say whether probes work."""
        available = check_levels(levels)
        if self._levels is None:
            self._levels = tuple(sorted(available, key=lambda lv: (lv is None, lv or 0)))
        else:
            missing = [lv for lv in self._levels if lv not in available]
            if missing:
                raise ValueError(f"schedule {self.name!r} needs levels {missing} that the source lacks "
                                 f"(it serves {available})")
        self.probes_available = bool(probes)
        self.bound = True

    # --- the interface ---------------------------------------------------------------------------
    @abstractmethod
    def level_weights(self) -> dict[Level, float]:
        """The distribution over levels to draw the next prompt from (sums to 1)."""

    def level(self, step: int | None = None) -> Level:
        """The schedule's current (most weighted) level; ties go to the easier level."""
        weights = self.level_weights()
        return max(self.levels, key=lambda lv: (weights.get(lv, 0.0), -self.levels.index(lv)))

    def update(self, stats: EpisodeStats | Mapping[str, Any]) -> None:
        """Hear one finished group (its `EpisodeStats`, or the step info it is built from)."""
        self.steps += 1
        self._update(stats_from_info(stats))

    @abstractmethod
    def _update(self, stats: EpisodeStats) -> None: ...

    def on_draw(self, level: Level) -> None:
        """Told by the stream each time it serves a prompt of a level this schedule chose."""
        self.draws += 1

    def probe_request(self) -> Level | None:
        """A level whose probe groups the schedule wants now, or None (the default: never)."""
        return None

    def observe_probe(self, level: Level, stats: Sequence[EpisodeStats | Mapping[str, Any]]) -> None:
        raise NotImplementedError(f"schedule {self.name!r} does not use probes")

    def summary(self) -> dict[str, Any]:
        """A small JSON-able view for logs and `info['curriculum']`."""
        weights = self.level_weights()
        level = self.level()
        return {"schedule": self.name, "level": level, "steps": self.steps, "draws": self.draws,
                "weights": {level_key(lv): round(float(w), 6) for lv, w in weights.items() if w > 0},
                **self._summary()}

    def _summary(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this schedule with `make_schedule(name, **config)`."""

    def _levels_config(self) -> dict[str, Any]:
        return {"levels": list(self._levels)} if self._explicit_levels and self._levels is not None else {}

    # --- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain JSON (a fresh copy, never aliasing live state): name, config, levels, counters, subclass state."""
        return _json_copy({"name": self.name, "config": self.config(),
                "levels": [level_key(lv) for lv in self.levels], "levels_bound": self._levels is not None,
                "steps": self.steps, "draws": self.draws, "probes_available": self.probes_available,
                "stream_bound": self.bound, "state": self._state()})

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            raise ValueError(f"state is for schedule {state.get('name')!r}, not {self.name!r}")
        levels = tuple(parse_level_key(k) for k in state["levels"])
        if self._explicit_levels and levels != self._levels:
            raise ValueError(f"state is for levels {levels}, this schedule has {self._levels}")
        self._levels = levels if state.get("levels_bound", True) else self._levels
        self.steps = int(state["steps"])
        self.draws = int(state.get("draws", 0))
        self.bound = bool(state.get("stream_bound", self.bound))
        self.probes_available = bool(state.get("probes_available", self.probes_available))
        self._load(_json_copy(state["state"]))

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load(self, state: Mapping[str, Any]) -> None: ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
