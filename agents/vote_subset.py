"""TTRL's N -> M shape: vote on N completions per prompt, train on M of them (`rollout.vote_group_size: N`).

TTRL estimates the majority label from N samples (64 in its paper) and trains on M (32) of them, each
rewarded for agreeing with the N-sample majority. Here the rollout samples N per prompt (`agents.rollout`),
`GroupVote` votes on all N (rewards, mask and the curriculum's statistics are the N-vote's), and
`VoteSubset`, next on the replay buffer's write path, keeps M = `rollout.group_size` rows of each group and
writes their advantages, group-normalised within the M kept (TTRL's GRPO normalises over the rows of a
prompt after its down-sampling).

Selection rule: a uniformly random M-subset of each group, kept in sampling order, drawn from a private
`torch.Generator` seeded with the run's seed (its state is saved with the rollout's, so a resumed run keeps
what the uninterrupted run keeps). TTRL's code keeps the first M of each prompt's samples
(`select_top_k_per_prompt`, PRIME-RL/TTRL verl/trainer/ppo/ttrl_utils.py). For i.i.d. samples that is a
random subset too, except in ties: the vote gives a tie to the cluster whose first member comes earliest, so
the first rows are likelier to hold the winner. A random subset is independent of the answers.

Why not TorchRL's `MCAdvantage(grpo_size=M, candidate_group_size=N, candidate_selector=...)`: it holds this
shape (a selector subclass returning the same subset gives the same rows and advantages: tests/test_vote_n.py),
but it walks the batch one single-row trajectory at a time (split by `done`, `contiguous`, queue, `cat`):
on the tiny base with 16 prompts x 32 rows it took 6.7 s per step where this takes 0.02 s, about as long as
that step's whole generation (7.2 s; 1 thread, on a shared 2-core machine).
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.envs import Transform

from cuma_env.torchrl.group_vote import group_advantage


class VoteSubset(Transform):
    """Replay-buffer write transform after `GroupVote`: of each voted group of `vote_size` consecutive rows, keep
    `keep` (a seeded random subset, in sampling order) and write their advantages, normalised within them
    (zero for a masked group kept by `train.masked_groups: zero_advantage`)."""

    def __init__(self, vote_size: int, keep: int, seed: int, *, reward_key: Any = ("next", "reward"),
                 masked_key: Any = ("next", "masked"), advantage_key: Any = "advantage"):
        super().__init__()
        if not 2 <= keep <= vote_size:
            raise ValueError(f"keep must be in [2, vote_size={vote_size}], got {keep}")
        self.vote_size, self.keep = int(vote_size), int(keep)
        self.reward_key, self.masked_key, self.advantage_key = reward_key, masked_key, advantage_key
        self.in_keys, self.out_keys = [reward_key, masked_key], [advantage_key]
        self.generator = torch.Generator().manual_seed(int(seed))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict  # sampling path: identity

    def _inv_call(self, tensordict: TensorDictBase | None) -> TensorDictBase | None:
        if tensordict is None:  # the vote dropped every group of the batch
            return None
        rows = tensordict.batch_size[0]
        if rows % self.vote_size:
            raise RuntimeError(f"VoteSubset takes whole voted groups of {self.vote_size} rows, got {rows} rows")
        groups = rows // self.vote_size
        kept = tensordict[self.draw(groups).reshape(-1)]
        rewards = kept.get(self.reward_key).reshape(groups, self.keep)
        masked = kept.get(self.masked_key).reshape(groups, self.keep)[:, 0].tolist()
        advantage = torch.cat([group_advantage(r, masked=m) for r, m in zip(rewards, masked)])
        kept.set(self.advantage_key, advantage.view(-1, 1, 1).to(kept.device))
        return kept

    def draw(self, groups: int) -> torch.Tensor:
        """(groups, keep) row indices: per group a uniformly random `keep`-subset, ascending, offset to its rows."""
        order = torch.rand(groups, self.vote_size, generator=self.generator).argsort(dim=1)
        return order[:, :self.keep].sort(dim=1).values + torch.arange(groups).unsqueeze(1) * self.vote_size

    def rng_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
