"""The group vote on the replay-buffer write path, for groups whose members arrive in separate batches.

    env = cuma_env.make_torchrl_env("CuMa-Arith-v0", group_size=8, batch_size=2, tokenizer=tok)  # scoring="buffer"
    rb = ReplayBuffer(storage=ListStorage(1024), transform=env.group_vote())   # GroupVote on `extend`
    rb.extend(batch_of_2)      # queued; nothing written until all 8 members of a group have arrived

When a group is complete, its completions go to the shared `cuma_env.episode.score_group` (the same
extraction, vote and reward as both env faces), the problem stream hears `observe(info)`, and the group is
written with `("next", "reward")` (G,1,1), `("next", "masked")` (G,1), `("next", "answer")` (G,) and a
group-normalised `advantage` (G,1,1). Masked groups are dropped (or kept with zero advantage).

This is a sibling of TorchRL's `MCAdvantage` rather than a subclass: MCAdvantage queues by prompt too, but
its rewards must already be in the data and its hooks (`_trajectory_advantage`) are private; a vote must
see the whole group's texts before any member has a reward. The advantage is MCAdvantage's formula
((r - mean) / unbiased std clamped at 1e-6), so `advantage_key=None` followed by
`MCAdvantage(grpo_size=G, prompt_key="group_id", trajectory_return="sum")` gives the same numbers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from tensordict import NonTensorStack, TensorDictBase, lazy_stack
from torchrl.envs import Transform

from cuma_env.episode import EpisodeConfig, score_group
from cuma_env.problems import Problem, ProblemStream
from cuma_env.rewards import GroupReward, make_reward
from cuma_env.torchrl_env import TOKEN_STATS_KEY, as_str_list, read_responses, read_token_stats

ProblemLookup = Callable[[Any], Problem | None] | Mapping[Any, Problem]


class GroupVote(Transform):
    """Replay-buffer write transform: queue members by group, vote when the group is complete.

    Args:
        group_size: members per group (G); a group is scored when G members with the same key arrived.
        min_votes, reward, last_number_fallback: as for the envs (ignored when `config` is given).
        config: an `EpisodeConfig` to use as is (e.g. the env's).
        reward_fn: a ready `GroupReward` (default: `make_reward(config.reward)`).
        problems: where a group's `Problem` comes from: a mapping or callable keyed by the group key (an
            entry is popped once used if the mapping has `pop`). Missing: a label-free `Problem` is rebuilt
            from the member's `problem_id`, `query` and `level` keys (reference diagnostics then absent).
        problem_stream: told `observe(info)` with score_group's info for every completed group.
        group_key: the key grouping members (`group_id` from the CuMa env; `query` for other chat envs).
        token_stats_key: per-member float input for `reward="self_certainty"` (read if present).
        advantage_key: where to write the group-normalised advantage (None: do not compute it).
        drop_masked: drop masked groups (default) or keep them with zero advantage.
        drop_uniform: also drop groups whose rewards are all equal (their advantage is zero anyway).
        source_name: `Problem.source` of rebuilt problems.
        max_pending_groups: incomplete groups kept at most; the oldest is forgotten beyond it (a collector
            can strand partial groups: notes, gotcha 7).
    """

    def __init__(self, group_size: int = 8, *, min_votes: int | float = 2, reward: Any = "masked_majority",
                 last_number_fallback: bool = True, config: EpisodeConfig | None = None,
                 reward_fn: GroupReward | None = None, problems: ProblemLookup | None = None,
                 problem_stream: ProblemStream | None = None, group_key: Any = "group_id",
                 token_stats_key: Any = TOKEN_STATS_KEY, reward_key: Any = ("next", "reward"),
                 masked_key: Any = ("next", "masked"), answer_key: Any = ("next", "answer"),
                 advantage_key: Any = "advantage", drop_masked: bool = True, drop_uniform: bool = False,
                 source_name: str = "unknown", max_pending_groups: int = 10_000):
        super().__init__()
        self.config = config or EpisodeConfig(group_size=group_size, min_votes=min_votes, reward=reward,
                                              last_number_fallback=last_number_fallback)
        self.reward_fn = reward_fn or make_reward(self.config.reward)
        if problems is not None and not (callable(problems) or hasattr(problems, "get")):
            raise TypeError(f"problems must be a mapping or a callable, got {type(problems).__name__}")
        self.problems = problems
        self.problem_stream = problem_stream
        self.group_key, self.token_stats_key = group_key, token_stats_key
        self.reward_key, self.masked_key, self.answer_key = reward_key, masked_key, answer_key
        self.advantage_key = advantage_key
        self.drop_masked, self.drop_uniform = bool(drop_masked), bool(drop_uniform)
        self.source_name = source_name
        self.max_pending_groups = int(max_pending_groups)
        self.in_keys = [group_key]
        self.out_keys = [k for k in (reward_key, masked_key, answer_key, advantage_key) if k is not None]
        self.queues: OrderedDict[Any, list[TensorDictBase]] = OrderedDict()
        self.last_info: dict[str, Any] | None = None
        self.groups_scored = self.groups_written = self.groups_dropped = 0

    @classmethod
    def from_env(cls, env: Any, **kwargs: Any) -> "GroupVote":
        """Bound to a `CuMaTorchRLEnv`: its config, reward, problem stream and problems in flight."""
        episode = env._episode
        if episode.scoring != "buffer":
            raise ValueError("this env scores each group in step (scoring='env'); a GroupVote would score it twice "
                             "and tell the problem stream twice. Build the env with scoring='buffer' (or a "
                             "batch_size < group_size), or use MCAdvantage(grpo_size, prompt_key='group_id', "
                             "trajectory_return='sum') for advantages of env-scored groups")
        kwargs.setdefault("config", episode.config)
        kwargs.setdefault("reward_fn", episode.reward_fn)
        kwargs.setdefault("problem_stream", episode.problem_stream)
        kwargs.setdefault("problems", episode.pending)
        kwargs.setdefault("token_stats_key", episode.token_stats_key)
        kwargs.setdefault("source_name", episode.gym.source.name)
        return cls(episode.config.group_size, **kwargs)

    @property
    def group_size(self) -> int:
        return self.config.group_size

    @property
    def pending_groups(self) -> int:
        """Incomplete groups held in memory."""
        return len(self.queues)

    @property
    def pending_members(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def clear(self) -> None:
        """Forget incomplete groups (e.g. a partial group stranded by a collector's extra reset)."""
        self.queues.clear()

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict  # sampling path: identity

    def _inv_call(self, tensordict: TensorDictBase) -> TensorDictBase | None:
        if tensordict.ndim == 0:
            tensordict = tensordict.unsqueeze(0)
        elif tensordict.ndim > 1:
            tensordict = tensordict.reshape(-1)  # single-turn: every entry is one member
        ready = []
        for member in tensordict.unbind(0):
            key = self._key(member)
            queue = self.queues.setdefault(key, [])
            queue.append(member)
            while len(self.queues) > self.max_pending_groups:
                self.queues.popitem(last=False)
            if len(queue) == self.group_size:
                del self.queues[key]
                group = self._score(key, queue)
                if group is not None:
                    ready.append(group)
        if not ready:
            return None
        return _stack(ready, cat=True)

    def _key(self, member: TensorDictBase) -> Any:
        value = member.get(self.group_key, None)
        if value is None:
            raise KeyError(f"GroupVote groups members by {self.group_key!r}, which this data lacks; set group_key=")
        if isinstance(value, torch.Tensor):
            return value.item() if value.numel() == 1 else tuple(value.reshape(-1).tolist())
        return as_str_list(value, 1)[0]

    def _problem(self, key: Any, group: TensorDictBase) -> Problem:
        problem = None
        if self.problems is not None:
            if hasattr(self.problems, "pop"):
                problem = self.problems.pop(key, None)
            elif hasattr(self.problems, "get"):
                problem = self.problems.get(key)
            else:
                problem = self.problems(key)
        return problem if problem is not None else self._rebuild(key, group[0])

    def _rebuild(self, key: Any, member: TensorDictBase) -> Problem:
        keys = set(member.keys())
        level = int(member.get("level")) if "level" in keys else -1
        problem_id = as_str_list(member.get("problem_id"), 1)[0] if "problem_id" in keys else str(key)
        prompt = as_str_list(member.get("query"), 1)[0] if "query" in keys else f"group {key}"
        return Problem(id=problem_id, prompt=prompt or f"group {key}", level=level if level in range(1, 6) else None,
                       source=self.source_name)

    def _score(self, key: Any, members: list[TensorDictBase]) -> TensorDictBase | None:
        group = _stack(members)
        n = self.group_size
        info = score_group(self._problem(key, group), read_responses(group), self.config, self.reward_fn,
                           token_stats=read_token_stats(group, self.token_stats_key))
        self.groups_scored += 1
        self.last_info = info
        if self.problem_stream is not None:
            self.problem_stream.observe(info)
        rewards = torch.tensor(info["rewards"], dtype=torch.float32)
        if (info["masked"] and self.drop_masked) or (self.drop_uniform and bool((rewards == rewards[0]).all())):
            self.groups_dropped += 1
            return None
        device = group.device
        group.set(self.reward_key, rewards.view(n, 1, 1).to(device))
        group.set(self.masked_key, torch.full((n, 1), info["masked"], dtype=torch.bool, device=device))
        group.set(self.answer_key, NonTensorStack(*info["answers"]))
        if self.advantage_key is not None:
            group.set(self.advantage_key, group_advantage(rewards, masked=info["masked"]).view(n, 1, 1).to(device))
        self.groups_written += 1
        return group


def group_advantage(rewards: torch.Tensor, masked: bool = False) -> torch.Tensor:
    """(r - mean) / std (unbiased, clamped at 1e-6), MCAdvantage's formula; zeros for a masked or size-1 group."""
    rewards = rewards.float().reshape(-1)
    if masked or rewards.numel() < 2:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean()) / rewards.std().clamp_min(1e-6)


def _stack(tds: list[TensorDictBase], cat: bool = False) -> TensorDictBase:
    """Dense when the members' leaves have equal shapes, else a lazy stack (ragged tokens)."""
    try:
        return torch.cat(tds, 0) if cat else torch.stack(tds, 0)
    except (RuntimeError, ValueError):
        if cat:
            return lazy_stack([m for td in tds for m in td.unbind(0)], 0)
        return lazy_stack(tds, 0)
