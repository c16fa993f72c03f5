"""`AgreementGated`: a label-free promotion rule with a readiness probe and a collapse guard.

Why not the paper's fixed stages: in the measured tiny world (docs/label-free-tiny-world.md) the paper's mask
(largest cluster < 2) almost never fires, because on hard levels wrong answers collide; the last stages then
train on levels where the majority is wrong ~95% of the time and the model learns consistency instead of
correctness. This schedule moves on only when the current level is mastered *by the model's own agreement*
and the next level is one where agreement still carries information, and it backs off when the model's
answers concentrate on one value across different prompts (the paper's collapse, visible without labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cuma_env.episode import prompt_concentration
from cuma_env.voting import resolve_min_votes
from curricula.schedules.base import Level, Schedule, check_fraction, staged_weights
from curricula.stats import EpisodeStats, stats_from_info

PROBE_COLLAPSE_SHARE = 0.5  # a probe fails if > this share of its informative groups give one answer
PROBE_COLLAPSE_MIN = 4      # ... judged only with at least this many informative groups
MAX_EVENTS = 32


class AgreementGated(Schedule):
    """Promote on rolling agreement; confirm with a probe of the next level; demote on collapse.

    Promotion from level k to k+1 needs, over the last `window` groups of level k (and at least `min_steps`
    groups there): mean agreement >= `agreement_threshold`, mask rate <= `max_mask_rate`, and no collapse.
    With a probe hook (see below) it also needs the next level to be *ready*: of `probe_size` prompts of
    level k+1 sampled without training, a share >= `probe_min_share` must reach a cluster of `strict_votes`
    (and the clusters must not all name one answer). A failed probe is retried after `probe_interval` groups.
    Without a probe hook (e.g. a plain Gymnasium loop) the current level's statistics decide alone.

    Collapse guard: over the majorities of the last `concentration_window` distinct prompts (any level, once
    at least `concentration_min` are seen), if one answer holds a share >= `concentration_threshold`, the
    schedule demotes one level (`on_collapse="demote"`, default; it holds at the first level) or only
    refuses to promote (`"hold"`). After a demotion the windows restart.

    Defaults and why (the prototype's measurements in docs/label-free-tiny-world.md, "Before the package";
    group of 8):
        agreement_threshold=0.75  6 of 8 agree on average: where majorities were mostly right on the easy
                                  levels (L1 top=6: 93% right; L2 top>=5: 83%; L3 top=6: 67%).
        max_mask_rate=0.25        at most a quarter of the groups give no signal (with the paper's "< 2"
                                  mask this never binds; with the strict 6-of-8 mask it matches the threshold).
        window=32, min_steps=32   32 groups: the rolling mean's noise is ~0.05, small against the gaps
                                  between levels.
        probe_size=8, strict_votes=0.75, probe_min_share=0.5
                                  a cluster of >= 6 of 8 is the cluster size at which votes were informative;
                                  clusters of >= 2 reach 82% of L4 groups while L4 majorities are 91-97% wrong.
        probe_interval=32         a failed probe costs 8 untrained groups per 32 trained ones at most.
        concentration_threshold=0.35 over 32 prompts (min 16)
                                  natural concentration is ~0.1-0.2 (L1 answers span 0..18, MATH answers are
                                  diverse); the collapsed run had one answer on half the prompts.
        on_collapse="demote", replay=0.0.

    Probe contract (implemented by the agent, passed to `CurriculumStream(probe=...)`):
        `probe(level, problems) -> list[dict]`: sample a group for each problem with the current policy at
        the training temperature, score it (e.g. `cuma_env.score_group`) *without* training on it, and
        return one info-like dict per problem with at least `agreement`, `masked`, `majority`,
        `majority_count`, `group_size` (label keys, if present, are ignored).
    """

    name = "agreement_gated"

    def __init__(self, levels: Sequence[Level] | None = None, *, window: int = 32, min_steps: int = 32,
                 agreement_threshold: float = 0.75, max_mask_rate: float = 0.25, probe_size: int = 8,
                 strict_votes: int | float = 0.75, probe_min_share: float = 0.5, probe_interval: int = 32,
                 concentration_threshold: float = 0.35, concentration_window: int = 32,
                 concentration_min: int = 16, on_collapse: str = "demote", replay: float = 0.0):
        super().__init__(levels)
        for key, value in (("window", window), ("min_steps", min_steps), ("probe_size", probe_size),
                           ("probe_interval", probe_interval), ("concentration_window", concentration_window),
                           ("concentration_min", concentration_min)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if concentration_min > concentration_window:
            raise ValueError("concentration_min must be <= concentration_window")
        if on_collapse not in ("demote", "hold"):
            raise ValueError(f"on_collapse must be 'demote' or 'hold', got {on_collapse!r}")
        resolve_min_votes(strict_votes, 1, name="strict_votes")  # a count or a share, as the env's min_votes
        self.window, self.min_steps, self.probe_size = window, min_steps, probe_size
        self.agreement_threshold = check_fraction("agreement_threshold", agreement_threshold)
        self.max_mask_rate = check_fraction("max_mask_rate", max_mask_rate)
        self.strict_votes = strict_votes
        self.probe_min_share = check_fraction("probe_min_share", probe_min_share)
        self.probe_interval = probe_interval
        self.concentration_threshold = check_fraction("concentration_threshold", concentration_threshold)
        self.concentration_window, self.concentration_min = concentration_window, concentration_min
        self.on_collapse = on_collapse
        self.replay = check_fraction("replay", replay, upper_open=True)
        self._reset_state()

    def _reset_state(self) -> None:
        self.index = 0
        self.steps_at_level = 0
        self._window: list[list[float]] = []           # [agreement, masked, parse_rate] at the current level
        self._answers: list[list[str | None]] = []     # [problem_id, majority] of recent groups, any level
        self._probe: dict[str, Any] | None = None      # last probe: level, at (steps_at_level), share, passed
        self._pending: Level | None = None             # level of a requested, unanswered probe
        self.events: list[list[Any]] = []              # [step, kind, level]

    # --- the interface ---------------------------------------------------------------------------
    def level_weights(self) -> dict[Level, float]:
        return staged_weights(self.levels, min(self.index, len(self.levels) - 1), self.replay)

    def level(self, step: int | None = None) -> Level:
        return self.levels[min(self.index, len(self.levels) - 1)]

    def _update(self, stats: EpisodeStats) -> None:
        self._answers.append([stats.problem_id, stats.majority])
        del self._answers[:-self.concentration_window]
        if stats.level == self.level():
            self.steps_at_level += 1
            self._window.append([stats.agreement, float(stats.masked), stats.parse_rate])
            del self._window[:-self.window]
        if self.collapsed:
            self._event("collapse")
            if self.on_collapse == "demote" and self.index > 0:
                self._move(-1, "demote")
            return
        if self._level_ready() and not self.probes_available:
            self._move(+1, "promote")

    def probe_request(self) -> Level | None:
        """The next level, when the current one is mastered and its last probe is missing or stale."""
        if not self.probes_available or not self._level_ready():
            return None
        if self._pending is not None:
            return self._pending
        nxt = self.levels[self.index + 1]
        last = self._probe
        if last is None or last["level"] != nxt or self.steps_at_level - last["at"] >= self.probe_interval:
            self._pending = nxt
            return nxt
        return None

    def observe_probe(self, level: Level, stats: Sequence[EpisodeStats | Mapping[str, Any]]) -> None:
        """Hear the probe groups of `level`; promote if the level is ready (see the class docstring)."""
        groups = [stats_from_info(s) for s in stats]
        self._pending = None
        if not groups:
            return
        informative = [g for g in groups
                       if g.majority_count >= resolve_min_votes(self.strict_votes, g.group_size, name="strict_votes")]
        share = len(informative) / len(groups)
        conc, seen = prompt_concentration((g.problem_id, g.majority) for g in informative)
        colliding = seen >= PROBE_COLLAPSE_MIN and conc > PROBE_COLLAPSE_SHARE
        passed = share >= self.probe_min_share and not colliding
        self._probe = {"level": level, "at": self.steps_at_level, "share": share, "passed": passed,
                       "concentration": conc}
        self._event("probe_pass" if passed else "probe_fail", level)
        if passed and self.index + 1 < len(self.levels) and level == self.levels[self.index + 1] \
                and self._level_ready():
            self._move(+1, "promote")

    # --- the gate --------------------------------------------------------------------------------
    @property
    def agreement(self) -> float | None:
        return sum(w[0] for w in self._window) / len(self._window) if self._window else None

    @property
    def mask_rate(self) -> float | None:
        return sum(w[1] for w in self._window) / len(self._window) if self._window else None

    @property
    def concentration(self) -> float:
        return prompt_concentration((pid, maj) for pid, maj in self._answers)[0]

    @property
    def collapsed(self) -> bool:
        conc, seen = prompt_concentration((pid, maj) for pid, maj in self._answers)
        return seen >= self.concentration_min and conc >= self.concentration_threshold

    def _level_ready(self) -> bool:
        """The current level is mastered (agreement, mask rate, no collapse) and a next level exists."""
        if self.index + 1 >= len(self.levels) or self.steps_at_level < self.min_steps or not self._window:
            return False
        return (self.agreement >= self.agreement_threshold and self.mask_rate <= self.max_mask_rate
                and not self.collapsed)

    def _move(self, delta: int, kind: str) -> None:
        self.index = max(0, min(len(self.levels) - 1, self.index + delta))
        self.steps_at_level = 0
        self._window = []
        self._pending = None
        if delta < 0:
            self._answers = []  # judge the lower level afresh, or it would demote again at once
        self._event(kind)

    def _event(self, kind: str, level: Level | None = None) -> None:
        if kind == "collapse" and self.events and self.events[-1][1] == "collapse":
            return  # one event per collapse episode, not one per group
        self.events.append([self.steps, kind, self.level() if level is None else level])
        del self.events[:-MAX_EVENTS]

    # --- reporting and state ---------------------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        parse = sum(w[2] for w in self._window) / len(self._window) if self._window else None
        return {"steps_at_level": self.steps_at_level, "agreement": _round(self.agreement),
                "mask_rate": _round(self.mask_rate), "parse_rate": _round(parse),
                "concentration": _round(self.concentration), "collapsed": self.collapsed,
                "probe": None if self._probe is None else {k: _round(v) if isinstance(v, float) else v
                                                           for k, v in self._probe.items()},
                "last_event": self.events[-1] if self.events else None}

    def config(self) -> dict[str, Any]:
        return {**self._levels_config(), "window": self.window, "min_steps": self.min_steps,
                "agreement_threshold": self.agreement_threshold, "max_mask_rate": self.max_mask_rate,
                "probe_size": self.probe_size, "strict_votes": self.strict_votes,
                "probe_min_share": self.probe_min_share, "probe_interval": self.probe_interval,
                "concentration_threshold": self.concentration_threshold,
                "concentration_window": self.concentration_window, "concentration_min": self.concentration_min,
                "on_collapse": self.on_collapse, "replay": self.replay}

    def _state(self) -> dict[str, Any]:
        return {"index": self.index, "steps_at_level": self.steps_at_level, "window": self._window,
                "answers": self._answers, "probe": self._probe, "pending": self._pending,
                "events": self.events}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.index = int(state["index"])
        self.steps_at_level = int(state["steps_at_level"])
        self._window = [list(map(float, w)) for w in state["window"]]
        self._answers = [[a[0], a[1]] for a in state["answers"]]
        self._probe = None if state["probe"] is None else dict(state["probe"])
        self._pending = state["pending"]
        self.events = [list(e) for e in state["events"]]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
