"""A run's generated completions, the unit of `train.max_samples` (equal-compute comparisons: `cuma study
--budget equal_samples`): every voted training group's and every curriculum probe's, evaluation not counted.

A group counts the answers it voted on (`info["answers"]`, one per completion generated; a custom probe's info
without them counts its `group_size`), so the count follows whatever a rollout generates per group. Probes run
inside the curriculum stream, during a step's vote: `watch_probes` wraps the stream's probe hook to count them.
The trainer keeps the count in its checkpoints, so a resumed run continues it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def completions(info: Mapping[str, Any]) -> int:
    """The completions one scored group (a training or probe info) was voted on."""
    answers = info.get("answers")
    return len(answers) if answers is not None else int(info.get("group_size", 0))


class SampleCount:
    """Running totals of generated completions: `train` (training groups), `probe` (probe groups), `total`."""

    def __init__(self) -> None:
        self.train = 0
        self.probe = 0
        self.last_step = 0  # the latest step's training completions: the size of the next one

    @property
    def total(self) -> int:
        return self.train + self.probe

    def add_step(self, infos: Iterable[Mapping[str, Any]], generated: float | None = None) -> None:
        """One step's training groups; `generated`: the rollout's own count of completions it generated this
        step, when it reports one (a rollout that votes on more completions than it trains on)."""
        n = int(generated) if generated is not None else sum(completions(i) for i in infos)
        self.train += n
        self.last_step = n

    def watch_probes(self, stream: Any) -> bool:
        """Count the probe groups of `stream` (a `curricula.CurriculumStream`) from now on, by wrapping its
        probe hook (its results are returned unchanged). False when the stream has no probe hook."""
        hook = getattr(stream, "probe", None)
        if hook is None:
            return False

        def counted(level: Any, problems: Any) -> list[Any]:
            results = list(hook(level, problems))
            self.probe += sum(completions(r) for r in results)
            return results

        stream.probe = counted
        return True

    def fits(self, budget: int | None, step: int) -> bool:
        """Whether a step of `step` training completions keeps the count within `budget` (None: no budget)."""
        return budget is None or self.total + step <= budget

    def state_dict(self) -> dict[str, int]:
        return {"train": self.train, "probe": self.probe, "last_step": self.last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.train, self.probe, self.last_step = (int(state[k]) for k in ("train", "probe", "last_step"))


__all__ = ["SampleCount", "completions"]
