"""The episode state one TorchRL env shares with its transforms and its `GroupVote`: `env.episode`.

The env's problem feed draws through it (`next_group`), its `GroupScorer` scores through it in `step`
(`scoring="env"`), and `GroupVote.from_env` reads its config, reward, stream and problems in flight
(`scoring="buffer"`). Problems are drawn by a private Gymnasium face (`cuma_env.gym_env.CuMaEnv`), so ids,
kwargs, validation, seeding and the problem stream's calls are that face's by construction.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from cuma_env.episode import EpisodeConfig, score_group
from cuma_env.gym_env import CuMaEnv
from cuma_env.problems import Problem, ProblemStream
from cuma_env.rewards import GroupReward

SCORINGS = ("env", "buffer")
MAX_PENDING_GROUPS = 10_000


class Episode:
    """What the env knows about its groups. Public, read-only for callers:

    Attributes:
        gym: the Gymnasium face that draws the problems (built from the env's kwargs).
        config: its `EpisodeConfig` (group size, min votes, reward name, answer extraction options).
        reward_fn: its `GroupReward`.
        problem_stream: the stream told `next_problem()` per group and `observe(info)` per scored group, or None.
        scoring: `"env"` (the env scores each whole group in `step`) or `"buffer"` (`GroupVote` scores it).
        token_stats_key: the per-member float input read by rewards that need token statistics.
        pending: group id -> `Problem` of the groups drawn and not yet scored (`GroupVote.from_env` pops
            them once scored; the oldest are forgotten beyond `MAX_PENDING_GROUPS`).
        last_info: `score_group`'s info for the last group scored in `step` (scoring="env"), or None.
    """

    def __init__(self, gym_env: CuMaEnv, scoring: str, token_stats_key: Any):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        self.gym = gym_env
        self.scoring = scoring
        self.token_stats_key = token_stats_key
        self.pending: OrderedDict[int, Problem] = OrderedDict()
        self.last_info: dict[str, Any] | None = None
        self._uid = secrets.randbelow(2**30) + 1  # keeps group ids distinct across env copies / processes
        self._count = 0

    @property
    def config(self) -> EpisodeConfig:
        return self.gym.config

    @property
    def reward_fn(self) -> GroupReward:
        return self.gym.reward_fn

    @property
    def problem_stream(self) -> ProblemStream | None:
        return self.gym.problem_stream

    @property
    def source_name(self) -> str:
        """`Problem.source` of the problems drawn (also of label-free problems rebuilt from a batch)."""
        return self.gym.source.name

    def next_group(self) -> tuple[int, Problem, str]:
        """Draws the next problem exactly as the Gymnasium face's reset does: (group id, problem, prompt)."""
        prompt, _ = self.gym.reset()
        self._count += 1
        group_id = self._uid * 2**32 + self._count
        if self.scoring == "env":
            self.pending.clear()  # one group in flight; kept after scoring so a re-step re-scores it (as gym)
        self.pending[group_id] = self.gym.problem
        while len(self.pending) > MAX_PENDING_GROUPS:
            self.pending.popitem(last=False)
        return group_id, self.gym.problem, prompt

    def score(self, problem: Problem, completions: Sequence[str],
              token_stats: Sequence[float] | None) -> dict[str, Any]:
        """`score_group` on a whole group, then `observe(info)` on the stream (scoring="env")."""
        info = score_group(problem, completions, self.config, self.reward_fn, token_stats=token_stats)
        if self.problem_stream is not None:
            self.problem_stream.observe(info)
        self.last_info = info
        return info
