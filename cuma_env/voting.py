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

DEFAULT_MIN_VOTES = 2  # the default mask threshold of every face (env, vote, trainers' rewards, the agent's config)


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


def resolve_min_votes(min_votes: int | float, group_size: int, *, name: str = "min_votes",
                      size_name: str = "group_size", within_group: bool = False) -> int:
    """The vote threshold as a count: an int is a count (>= 1), a float a share r in (0, 1] of the group,
    ceil(r * group_size) (>= 1).

    The one conversion (and check) of a `min_votes`-like threshold: the vote, `EpisodeConfig`, the training
    config, the CLI and the curriculum's strict cluster size all call it, so they accept the same values and
    say the same one line about bad ones. `name` / `size_name` are how the caller spells the two (an option,
    a config key). `within_group`: also refuse a count above `group_size`, which would mask every group
    (a bare vote allows it).
    """
    is_count = isinstance(min_votes, numbers.Integral) and not isinstance(min_votes, bool)
    is_share = isinstance(min_votes, numbers.Real) and not isinstance(min_votes, (bool, numbers.Integral)) \
        and 0.0 < float(min_votes) <= 1.0  # NaN fails the comparison
    if not (is_count and min_votes >= 1) and not is_share:
        hint = " (a count is an int: write it without a decimal point)" \
            if isinstance(min_votes, float) and min_votes > 1 and min_votes.is_integer() else ""
        raise ValueError(f"{name} must be a count (an int >= 1) or a share of the group in (0, 1], "
                         f"got {min_votes!r}{hint}")
    if is_count:
        if within_group and min_votes > group_size:
            raise ValueError(f"{name} {min_votes} is more than {size_name} {group_size}: every group would be "
                             f"masked; give a count <= {group_size} or a share such as 0.75")
        return int(min_votes)
    return max(1, math.ceil(float(min_votes) * group_size - 1e-9))


def majority_vote(answers: Sequence[str | None], min_votes: int | float = DEFAULT_MIN_VOTES, *,
                  timeout: float = 2.0, empty_votes: bool = False) -> Vote:
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
