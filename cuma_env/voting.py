"""Majority vote over a group of extracted answers: the label-free pseudo-label and its rewards.

Conventions (the paper leaves them open; each is fixed and tested here):
- equivalent answers form one cluster before counting (`cuma_env.answers.cluster_answers`);
- `None` (no parsable answer) never votes and never wins, unless `empty_votes=True`: then all `None`
  answers form one cluster that counts and can win like any other (TTRL's own code does this, so a group of
  mostly empty answers is rewarded for being empty; the paper leaves the choice open);
- ties between equally large clusters go to the cluster whose first member appears earliest;
- the group is *masked* (no learning signal) when the largest cluster has fewer than `min_votes`
  members; `min_votes` is a count (int >= 1) or a share of the group size (float in (0, 1], rounded up).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from cuma_env.answers import cluster_answers


@dataclass(frozen=True)
class Vote:
    """Outcome of one group vote. `clusters` lists member indices, largest first (ties: earliest first)."""

    label: str | None
    count: int
    masked: bool
    rewards: tuple[float, ...]
    clusters: tuple[tuple[int, ...], ...]
    group_size: int
    empty: tuple[int, ...] = ()  # members of the cluster of unparsable answers (only with `empty_votes=True`)

    @property
    def agreement(self) -> float:
        """Share of the whole group (None answers included) that voted for the label."""
        return self.count / self.group_size if self.group_size else 0.0

    @property
    def parse_rate(self) -> float:
        """Share of the group that produced an answer at all."""
        parsed = sum(len(c) for c in self.clusters) - len(self.empty)
        return parsed / self.group_size if self.group_size else 0.0


def resolve_min_votes(min_votes: int | float, group_size: int) -> int:
    """Vote threshold as a count: an int as is, a float ratio r in (0, 1] as ceil(r * group_size) (>= 1)."""
    if isinstance(min_votes, bool) or not isinstance(min_votes, numbers.Real):
        raise ValueError(f"min_votes must be an int >= 1 or a float in (0, 1], got {min_votes!r}")
    if isinstance(min_votes, numbers.Integral):
        if min_votes < 1:
            raise ValueError(f"min_votes as a count must be >= 1, got {min_votes}")
        return int(min_votes)
    min_votes = float(min_votes)
    if not (0.0 < min_votes <= 1.0) or math.isnan(min_votes):
        raise ValueError(
            f"min_votes as a float is a share of the group and must be in (0, 1], got {min_votes!r} "
            "(pass an int for an absolute count)"
        )
    return max(1, math.ceil(min_votes * group_size - 1e-9))


def majority_vote(answers: Sequence[str | None], min_votes: int | float = 2, *, timeout: float = 2.0,
                  empty_votes: bool = False) -> Vote:
    """Vote over `answers` (one extracted answer or None per completion); see the module docstring."""
    group_size = len(answers)
    threshold = resolve_min_votes(min_votes, group_size)
    ids = cluster_answers(answers, timeout=timeout)
    members: dict[int, list[int]] = {}
    for index, cid in enumerate(ids):
        if cid is not None:
            members.setdefault(cid, []).append(index)
    empty = tuple(i for i, cid in enumerate(ids) if cid is None) if empty_votes else ()
    if empty:
        members[-1] = list(empty)  # cluster ids are >= 0
    clusters = sorted((tuple(m) for m in members.values()), key=lambda m: (-len(m), m[0]))
    if not clusters:
        return Vote(None, 0, True, (0.0,) * group_size, (), group_size)
    winner = clusters[0]
    count = len(winner)
    masked = count < threshold
    chosen = set(winner)
    rewards = tuple(0.0 if masked or i not in chosen else 1.0 for i in range(group_size))
    label = None if empty and winner == empty else answers[winner[0]]
    return Vote(label, count, masked, rewards, tuple(clusters), group_size, empty)
