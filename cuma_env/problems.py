"""Problem records and the one interface every problem source offers.

A *source* is anything that can hand out problems by (level, index): a JSONL pool read from disk, or a
procedural generator with an unbounded stream per level. Samplers and curricula (package `curricula`) work
against this interface only, so a new source (synthetic files, a mix) plugs in without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Problem:
    """One problem: what the model sees, and what only diagnostics may see.

    `answer` is the hidden reference. Label-free rewards never read it; it is used for the diagnostics
    (`majority_correct`, per-response `correct`) and by the labelled `ground_truth` reward.
    """

    id: str
    prompt: str
    level: int | None
    source: str
    answer: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"problem {self.id!r}: prompt must be a non-empty string")
        if self.level is not None and self.level not in LEVELS:
            raise ValueError(f"problem {self.id!r}: level must be one of {LEVELS} or None, got {self.level!r}")

    def to_json(self) -> dict[str, Any]:
        """A plain dict in the pools' JSONL layout (`problem`, `level`, `answer`, ...)."""
        return {"id": self.id, "problem": self.prompt, "level": self.level, "source": self.source,
                "answer": self.answer, **dict(self.meta)}


@runtime_checkable
class ProblemSource(Protocol):
    """What samplers and environments need from a source of problems.

    `levels` lists the levels the source can serve (`(None,)` for an unleveled source such as GSM8K).
    `size(level)` is the number of distinct problems at that level, or None for an unbounded stream.
    `get(level, index)` returns the problem at that position; it is deterministic.
    """

    name: str

    @property
    def levels(self) -> tuple[int | None, ...]: ...

    def size(self, level: int | None) -> int | None: ...

    def get(self, level: int | None, index: int) -> Problem: ...


class PoolSource:
    """A finite list of problems, grouped by level in file order."""

    def __init__(self, name: str, problems: Iterable[Problem]):
        self.name = name
        self._by_level: dict[int | None, list[Problem]] = {}
        for problem in problems:
            self._by_level.setdefault(problem.level, []).append(problem)
        if not self._by_level:
            raise ValueError(f"source {name!r} has no problems")

    @property
    def levels(self) -> tuple[int | None, ...]:
        return tuple(sorted(self._by_level, key=lambda lv: (lv is None, lv or 0)))

    def size(self, level: int | None) -> int:
        return len(self._level_list(level))

    def get(self, level: int | None, index: int) -> Problem:
        items = self._level_list(level)
        if not 0 <= index < len(items):
            raise IndexError(f"source {self.name!r} level {level}: index {index} out of range 0..{len(items) - 1}")
        return items[index]

    def problems(self, levels: Sequence[int | None] | None = None) -> list[Problem]:
        """All problems of the given levels (default: every level), in source order."""
        wanted = self.levels if levels is None else tuple(levels)
        return [p for lv in wanted for p in self._level_list(lv)]

    def filter_levels(self, levels: Sequence[int | None]) -> PoolSource:
        """A new source holding only `levels`; unknown levels are one clear error."""
        return PoolSource(self.name, self.problems(levels))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_level.values())

    def _level_list(self, level: int | None) -> list[Problem]:
        try:
            return self._by_level[level]
        except KeyError:
            raise KeyError(f"source {self.name!r} has no problems at level {level!r}; "
                           f"its levels are {self.levels}") from None

    def __repr__(self) -> str:
        counts = ", ".join(f"L{lv}: {len(self._by_level[lv])}" for lv in self.levels)
        return f"PoolSource({self.name!r}, {counts})"


@runtime_checkable
class ProblemStream(Protocol):
    """Decides the next problem and hears how each finished group went.

    Curricula implement this; both environment faces accept one (`problem_stream=`) and call
    `next_problem()` on every reset and `observe(info)` with the step's group info once a group is scored.
    """

    def next_problem(self) -> Problem: ...

    def observe(self, info: Mapping[str, Any]) -> None: ...
