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

A `GroupVote` bound to a `CuMaTorchRLEnv` (`env.group_vote()`, `GroupVote.from_env`) reads the env's public
`env.episode` (`cuma_env.torchrl.episode.Episode`). This module imports no other module of the subpackage but
`cuma_env.torchrl.layout` (how a batch keeps its responses).

Speed: a batch's group keys, response texts and token statistics are read once; members are queued as
(batch, row) references and written together, all ready groups of a batch at once: one dense copy, or with
`copy=False` (a caller that never reads its batch again, like `agents.rollout`) the rows themselves, rather
than unbinding the lazily stacked members and stacking them group by group (docs/performance.md).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from tensordict import LazyStackedTensorDict, NonTensorStack, TensorDictBase, lazy_stack
from torchrl.envs import Transform

from cuma_env.episode import EpisodeConfig, score_group
from cuma_env.problems import LEVELS, Problem, ProblemStream
from cuma_env.rewards import GroupReward, make_reward
from cuma_env.torchrl.layout import TOKEN_STATS_KEY, as_str_list, read_responses, read_token_stats
from cuma_env.voting import DEFAULT_MIN_VOTES

ProblemLookup = Callable[[Any], Problem | None] | Mapping[Any, Problem]


class _Member(NamedTuple):
    """A queued member: a reference to its batch row (copied only when its group is written)."""

    batch: TensorDictBase
    row: int
    text: str
    stat: float | None


class GroupVote(Transform):
    """Replay-buffer write transform: queue members by group, vote when the group is complete.

    Args:
        group_size: members per group (G); a group is scored when G members with the same key arrived.
        min_votes, reward, last_number_fallback, empty_votes: as for the envs (ignored when `config` is given).
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
            can strand partial groups: docs/torchrl-gotchas.md, gotcha 7).
        copy: write copies of the kept rows (default). False: the caller hands over batches it never reads
            again (e.g. a collector's fresh output); kept rows are then selected and written in place.
    """

    def __init__(self, group_size: int = 8, *, min_votes: int | float = DEFAULT_MIN_VOTES,
                 reward: Any = "masked_majority",
                 last_number_fallback: bool = True, empty_votes: bool = False,
                 config: EpisodeConfig | None = None, reward_fn: GroupReward | None = None,
                 problems: ProblemLookup | None = None,
                 problem_stream: ProblemStream | None = None, group_key: Any = "group_id",
                 token_stats_key: Any = TOKEN_STATS_KEY, reward_key: Any = ("next", "reward"),
                 masked_key: Any = ("next", "masked"), answer_key: Any = ("next", "answer"),
                 advantage_key: Any = "advantage", drop_masked: bool = True, drop_uniform: bool = False,
                 source_name: str = "unknown", max_pending_groups: int = 10_000, copy: bool = True):
        super().__init__()
        self.config = config or EpisodeConfig(group_size=group_size, min_votes=min_votes, reward=reward,
                                              last_number_fallback=last_number_fallback,
                                              empty_votes=empty_votes)
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
        self.copy = bool(copy)
        self.in_keys = [group_key]
        self.out_keys = [k for k in (reward_key, masked_key, answer_key, advantage_key) if k is not None]
        self.queues: OrderedDict[Any, list[_Member]] = OrderedDict()
        self.last_info: dict[str, Any] | None = None
        self.groups_scored = self.groups_written = self.groups_dropped = 0

    @classmethod
    def from_env(cls, env: Any, **kwargs: Any) -> GroupVote:
        """Bound to a `CuMaTorchRLEnv`: its config, reward, problem stream and problems in flight (`env.episode`)."""
        episode = env.episode
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
        kwargs.setdefault("source_name", episode.source_name)
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
        n = tensordict.batch_size[0]
        if n == 0:
            return None
        keys = self._keys(tensordict)
        texts = read_responses(tensordict)
        stats = read_token_stats(tensordict, self.token_stats_key) or [None] * n
        ready = []
        for row, key in enumerate(keys):
            queue = self.queues.setdefault(key, [])
            queue.append(_Member(tensordict, row, texts[row], stats[row]))
            while len(self.queues) > self.max_pending_groups:
                self.queues.popitem(last=False)
            if len(queue) == self.group_size:
                del self.queues[key]
                group = self._score(key, queue)
                if group is not None:
                    ready.append(group)
        return self._write(ready) if ready else None

    def _keys(self, tensordict: TensorDictBase) -> list[Any]:
        """Each member's group key (one read for the whole batch)."""
        value = tensordict.get(self.group_key, None)
        if value is None:
            raise KeyError(f"GroupVote groups members by {self.group_key!r}, which this data lacks; set group_key=")
        n = tensordict.batch_size[0]
        if isinstance(value, torch.Tensor):
            return [r[0] if len(r) == 1 else tuple(r) for r in value.reshape(n, -1).tolist()]
        return as_str_list(value, n)

    def _problem(self, key: Any, first: _Member) -> Problem:
        problem = None
        if self.problems is not None:
            if hasattr(self.problems, "pop"):
                problem = self.problems.pop(key, None)
            elif hasattr(self.problems, "get"):
                problem = self.problems.get(key)
            else:
                problem = self.problems(key)
        return problem if problem is not None else self._rebuild(key, first.batch[first.row])

    def _rebuild(self, key: Any, member: TensorDictBase) -> Problem:
        keys = set(member.keys())
        level = int(member.get("level")) if "level" in keys else -1
        problem_id = as_str_list(member.get("problem_id"), 1)[0] if "problem_id" in keys else str(key)
        prompt = as_str_list(member.get("query"), 1)[0] if "query" in keys else f"group {key}"
        return Problem(id=problem_id, prompt=prompt or f"group {key}", level=level if level in LEVELS else None,
                       source=self.source_name)

    def _score(self, key: Any, members: list[_Member]) -> tuple[list[_Member], torch.Tensor, dict] | None:
        """Vote on a complete group and tell the stream; None when the group is dropped."""
        stats = [m.stat for m in members]
        info = score_group(self._problem(key, members[0]), [m.text for m in members], self.config, self.reward_fn,
                           token_stats=None if None in stats else stats)
        self.groups_scored += 1
        self.last_info = info
        if self.problem_stream is not None:
            self.problem_stream.observe(info)
        rewards = torch.tensor(info["rewards"], dtype=torch.float32)
        if (info["masked"] and self.drop_masked) or (self.drop_uniform and bool((rewards == rewards[0]).all())):
            self.groups_dropped += 1
            return None
        self.groups_written += 1
        return members, rewards, info

    def _write(self, ready: list[tuple[list[_Member], torch.Tensor, dict]]) -> TensorDictBase:
        """The ready groups' members, in order, as one new TensorDict with the vote's entries set."""
        out = _gather([m for members, _, _ in ready for m in members], self.copy)
        n, device = self.group_size, out.device
        out.set(self.reward_key, torch.cat([r for _, r, _ in ready]).view(-1, 1, 1).to(device))
        masked = torch.tensor([info["masked"] for _, _, info in ready], dtype=torch.bool)
        out.set(self.masked_key, masked.repeat_interleave(n).view(-1, 1).to(device))
        out.set(self.answer_key, NonTensorStack(*[a for _, _, info in ready for a in info["answers"]]))
        if self.advantage_key is not None:
            advantage = torch.cat([group_advantage(r, masked=info["masked"]) for _, r, info in ready])
            out.set(self.advantage_key, advantage.view(-1, 1, 1).to(device))
        return out


def group_advantage(rewards: torch.Tensor, masked: bool = False) -> torch.Tensor:
    """(r - mean) / std (unbiased, clamped at 1e-6), MCAdvantage's formula; zeros for a masked or size-1 group."""
    rewards = rewards.float().reshape(-1)
    if masked or rewards.numel() < 2:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean()) / rewards.std().clamp_min(1e-6)


def _gather(members: list[_Member], copy: bool = True) -> TensorDictBase:
    """The members' rows in one TensorDict: new containers (dense when the leaves line up), or, with
    `copy=False` and a single source batch, that batch's rows themselves."""
    batch = members[0].batch
    if all(m.batch is batch for m in members):
        rows = [m.row for m in members]
        if not isinstance(batch, LazyStackedTensorDict):
            return batch if not copy and rows == list(range(batch.batch_size[0])) else batch[torch.tensor(rows)]
        picked = batch if rows == list(range(batch.batch_size[0])) else batch[torch.tensor(rows)]
        if not copy:
            return picked  # a lazy stack of the caller's member TensorDicts
    else:
        picked = lazy_stack([m.batch[m.row] for m in members])
    if picked.stack_dim == 0 and not getattr(picked, "_has_exclusive_keys", True):
        try:
            return picked.contiguous()  # one dense copy (it would drop exclusive keys: checked above)
        except (RuntimeError, ValueError, TypeError):
            pass
    return _stack([td.clone() for td in picked.unbind(0)])


def _stack(tds: list[TensorDictBase]) -> TensorDictBase:
    """Dense when the members' leaves have equal shapes, else a lazy stack (ragged tokens)."""
    try:
        return torch.stack(tds, 0)
    except (RuntimeError, ValueError):
        return lazy_stack(tds, 0)
