"""Score a flat batch of completions as consecutive groups of G: the one step every trainer adapter shares.

Trainers (TRL's `GRPOTrainer`, verl's reward managers, verifiers' rubrics) hand a reward a flat list in
which the G samples of one prompt sit next to each other. `score_blocks` cuts that list into blocks of G
and scores each block with `cuma_env.episode.score_group`, so every adapter votes, masks and reports exactly
as the Gymnasium face does. `integrations/trl.py`, `integrations/verl.py` and `integrations/verifiers.py`
all use it; it imports no trainer.

    scored = score_blocks(texts, group_size=8, config=EpisodeConfig(min_votes=2))
    flat = rewards_per_row(scored, masked=None)   # TRL: None masks a row; verl/verifiers: masked=0.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cuma_env.episode import EpisodeConfig, score_group
from cuma_env.problems import Problem, ProblemStream

UNKNOWN_SOURCE = "external"


@dataclass(frozen=True)
class ScoredGroup:
    """One block of G completions after the vote: per-member rewards, the mask, and the step info.

    `info` is exactly the Gymnasium step info (`majority`, `agreement`, `parse_rate`, `answers`, ...), so a
    curriculum's `observe(info)` or a logger reads the same keys whichever trainer produced the group.
    """

    rewards: tuple[float, ...]
    masked: bool
    info: Mapping[str, Any]


def placeholder_problem(prompt: str | None = None, problem_id: str | None = None,
                        level: int | None = None) -> Problem:
    """A problem for a group whose catalog record the trainer did not pass: no answer, so no diagnostics."""
    text = prompt if isinstance(prompt, str) and prompt.strip() else "(prompt not given)"
    return Problem(id=problem_id or "unknown", prompt=text, level=level, source=UNKNOWN_SOURCE)


def check_blocks(n_rows: int, group_size: int) -> int:
    """The number of groups in `n_rows`, or one clear error when the rows do not form whole groups.

    A trainer that splits a prompt's samples across processes (TRL when `per_device_train_batch_size *
    steps_per_generation` is not a multiple of G) lands here: a vote over half a group would be wrong.
    """
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if n_rows % group_size:
        raise ValueError(f"{n_rows} completions do not form whole groups of {group_size}: the trainer must "
                         f"hand the reward every sample of a prompt together (the G samples of one prompt "
                         f"adjacent, and a batch a multiple of G)")
    return n_rows // group_size


def score_blocks(completions: Sequence[str], group_size: int, config: EpisodeConfig | None = None,
                 problems: Sequence[Problem | None] | None = None, *,
                 token_stats: Sequence[float] | None = None,
                 stream: ProblemStream | None = None) -> list[ScoredGroup]:
    """Vote on each block of `group_size` consecutive completions; one `ScoredGroup` per block, in order.

    `config` sets the reward and vote (`reward`, `min_votes`, ...); its `group_size` is replaced by the
    trainer's `group_size`. `problems` is one per block or one per row (rows of a block must then share a
    problem id) or None (a placeholder: label-free rewards never need the problem; `ground_truth` and the
    `correct` diagnostics do). `token_stats` is one float per row (for `self_certainty`). `stream`, if given,
    hears `observe(info)` for each group, which is how a curriculum learns from a trainer's rollouts.
    """
    completions = list(completions)
    n_groups = check_blocks(len(completions), group_size)
    config = dataclasses.replace(config or EpisodeConfig(), group_size=group_size)
    per_block = _problems_per_block(problems, n_groups, group_size)
    if token_stats is not None and len(token_stats) != len(completions):
        raise ValueError(f"token_stats has {len(token_stats)} values for {len(completions)} completions")
    scored = []
    for g in range(n_groups):
        rows = slice(g * group_size, (g + 1) * group_size)
        problem = per_block[g] or placeholder_problem()
        info = score_group(problem, completions[rows], config,
                           token_stats=None if token_stats is None else token_stats[rows])
        if stream is not None:
            stream.observe(info)
        scored.append(ScoredGroup(rewards=tuple(info["rewards"]), masked=info["masked"], info=info))
    return scored


def rewards_per_row(scored: Sequence[ScoredGroup], masked: float | None = 0.0) -> list[float | None]:
    """The flat per-row rewards; every member of a masked group gets `masked` (TRL: None, others: 0.0)."""
    return [masked if group.masked else r for group in scored for r in group.rewards]


def _problems_per_block(problems: Sequence[Problem | None] | None, n_groups: int,
                        group_size: int) -> list[Problem | None]:
    if problems is None:
        return [None] * n_groups
    problems = list(problems)
    if len(problems) == n_groups:
        return problems
    if len(problems) != n_groups * group_size:
        raise ValueError(f"problems must be one per group ({n_groups}) or one per completion "
                         f"({n_groups * group_size}), got {len(problems)}")
    blocks = [problems[g * group_size:(g + 1) * group_size] for g in range(n_groups)]
    for g, block in enumerate(blocks):
        ids = {None if p is None else p.id for p in block}
        if len(ids) > 1:
            raise ValueError(f"group {g} mixes problems {sorted(map(str, ids))}: the G samples of one prompt "
                             f"must be adjacent")
    return [block[0] for block in blocks]
