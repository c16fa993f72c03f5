"""What a group reward sees (`Group`) and returns (`GroupOutcome`), and its shape (`GroupReward`).

A module of their own so that reward modules (`cuma_env.rewards`, `cuma_env.control_rewards`) can import them
without importing one another; `cuma_env.rewards` re-exports all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cuma_env.problems import Problem
from cuma_env.voting import Vote


@dataclass(frozen=True)
class Group:
    """Everything a reward function may look at for one prompt's group of responses."""

    problem: Problem
    completions: tuple[str, ...]
    answers: tuple[str | None, ...]
    vote: Vote
    token_stats: tuple[float, ...] | None = None  # per-response self-certainty, from the caller's logits

    @property
    def size(self) -> int:
        return len(self.completions)


@dataclass(frozen=True)
class GroupOutcome:
    rewards: tuple[float, ...]
    masked: bool


class GroupReward(Protocol):
    name: str
    uses_labels: bool  # whether its rewards read the hidden answer (see `cuma_env.rewards.reward_uses_labels`)

    def __call__(self, group: Group) -> GroupOutcome: ...


__all__ = ["Group", "GroupOutcome", "GroupReward"]
