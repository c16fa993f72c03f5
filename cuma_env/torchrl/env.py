"""The TorchRL face: the CuMa episode as a `torchrl.envs.llm` chat env whose batch is the group.

    env = cuma_env.make_torchrl_env("CuMa-Arith-v0", group_size=8, tokenizer=tokenizer)
    policy = TransformersWrapper(model, tokenizer=tokenizer, input_mode="text", generate_kwargs=...)
    td = env.reset(); td = env.step(policy(td))      # ("next", "reward"): (8, 1, 1), ("next", "masked"): (8, 1)

It is TorchRL's own `ChatEnv` (keys `text`/`history`, so `TransformersWrapper`/`vLLMWrapper` plug in) with
two transforms: TorchRL's `DataLoadingPrimer`, fed one problem per group and repeating it `group_size`
times (a reset of a batch of G is one group), and `GroupScorer`, which hands the G responses to the shared
`cuma_env.episode.score_group` (the Gymnasium face's code) and writes the rewards. Problems are drawn through
`env.episode` (`cuma_env.torchrl.episode.Episode`), which wraps a private `CuMaEnv` (the Gymnasium face) built
from the same kwargs, so ids, kwargs, validation, seeding and `problem_stream` calls (`next_problem()` per
group at reset, `observe(info)` once the group is scored) are the Gymnasium face's by construction.

With `batch_size < group_size` (or `scoring="buffer"`) a group's members come in several env batches. The
env then neither reads nor scores the responses: its step only ends the episode (`done`), and it declares no
reward, `masked` or `answer` (`EnvBase.step` requires every declared reward key in each step's output, and a
placeholder would be read by nobody). `env.group_vote()` (`cuma_env.torchrl.group_vote.GroupVote`) scores
each group on the replay-buffer write path once all its members have arrived, and writes those keys: each
completion is extracted and voted exactly once.

Module graph (acyclic): env -> episode, group_vote, fast_paths, layout; group_vote -> layout.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import NonTensorStack, TensorDict, TensorDictBase, list_to_stack, set_list_to_stack
from torchrl.data import Binary, Composite, NonTensor, Unbounded
from torchrl.envs import Compose, Transform, TransformedEnv
from torchrl.envs.llm.transforms import DataLoadingPrimer

from cuma_env.gym_env import CuMaEnv
from cuma_env.problems import Problem
from cuma_env.torchrl.episode import SCORINGS, Episode
from cuma_env.torchrl.fast_paths import DenseResetChatEnv, InPlaceCompose
from cuma_env.torchrl.group_vote import GroupVote
from cuma_env.torchrl.layout import TOKEN_STATS_KEY, as_str_list, read_responses, read_token_stats

INPUT_MODES = ("text", "history")

_GYM_KWARGS = tuple(p for p in inspect.signature(CuMaEnv.__init__).parameters if p not in ("self", "task"))
TORCHRL_KWARGS = ("tokenizer", "input_mode", "batch_size", "scoring", "system_prompt", "template_kwargs",
                  "device", "seed", "token_stats_key", "fast")


def make_torchrl_env(env_id: str, **kwargs: Any) -> CuMaTorchRLEnv:
    """The `env_id` episode as a TorchRL env; kwargs are the Gymnasium face's plus `TORCHRL_KWARGS`."""
    unknown = sorted(set(kwargs) - set(_GYM_KWARGS) - set(TORCHRL_KWARGS))
    if unknown:
        raise TypeError(f"make_torchrl_env({env_id!r}) got unknown keyword argument(s) {unknown}; it takes the "
                        f"Gymnasium face's {list(_GYM_KWARGS)} plus the TorchRL ones {list(TORCHRL_KWARGS)}")
    return CuMaTorchRLEnv(env_id, **kwargs)


class _ProblemFeed:
    """The 'dataloader' of the `DataLoadingPrimer`: one problem (TensorDict) per group, forever."""

    def __init__(self, episode: Episode):
        self.episode = episode

    def __iter__(self):
        while True:
            group_id, problem, prompt = self.episode.next_group()
            with set_list_to_stack(True):
                yield TensorDict({"query": prompt, "problem_id": problem.id,
                                  "level": torch.tensor(-1 if problem.level is None else problem.level),
                                  "group_id": torch.tensor(group_id)}, batch_size=[])


class GroupScorer(Transform):
    """Scores a whole group per step with `score_group`; writes reward (B,1,1), masked (B,1), answer (B,).

    TorchRL's reward parsers (`MATHRewardParser`, ...) score each response alone against a label; a vote
    needs the group together and no label, hence this small transform. With `scoring="buffer"` it only ends
    the episode (`done`/`terminated`) and declares no reward, `masked` or `answer`: `GroupVote` reads the
    responses and writes those on the replay-buffer write path.
    """

    def __init__(self, episode: Episode):
        super().__init__()
        self.episode = episode

    @property
    def scores(self) -> bool:
        """Whether this env scores in `step` (scoring="env") and so owns reward, masked and answer."""
        return self.episode.scoring == "env"

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        if self.scores:
            n = tensordict_reset.batch_size[0]
            tensordict_reset.set("masked", torch.zeros(n, 1, dtype=torch.bool, device=tensordict_reset.device))
            tensordict_reset.set("answer", NonTensorStack(*([None] * n)))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        n = tensordict.batch_size[0]
        _set_done(next_tensordict, n)
        if not self.scores:
            return next_tensordict  # GroupVote reads, extracts and votes once all members are in
        if n == 0:  # nothing to score (e.g. a partial step that selected no member)
            return _write_scores(next_tensordict, [], False, [])
        ep = self.episode
        group_ids = set(tensordict.get("group_id").reshape(-1).tolist())
        if len(group_ids) != 1:
            raise RuntimeError(f"scoring='env' needs one whole group per step, got group ids {group_ids}; "
                               "use scoring='buffer' with cuma_env.torchrl.group_vote.GroupVote")
        gid = group_ids.pop()
        problem = ep.pending.get(gid) or _fallback_problem(tensordict, ep.source_name)
        info = ep.score(problem, read_responses(tensordict), read_token_stats(tensordict, ep.token_stats_key))
        return _write_scores(next_tensordict, info["rewards"], info["masked"], info["answers"])

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        if self.scores:
            shape, device = observation_spec.shape, observation_spec.device
            observation_spec["masked"] = Binary(n=1, shape=(*shape, 1), dtype=torch.bool, device=device)
            observation_spec["answer"] = NonTensor(shape=shape, example_data="42", device=device)
        return observation_spec

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        if self.scores:
            reward_spec["reward"] = Unbounded(shape=(*reward_spec.shape, 1, 1), dtype=torch.float32,
                                              device=reward_spec.device)
        return reward_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        if self.scores and self.episode.reward_fn.name == "self_certainty":  # the caller supplies it with the action
            action_spec = input_spec["full_action_spec"]
            action_spec[self.episode.token_stats_key] = Unbounded(shape=action_spec.shape, dtype=torch.float32,
                                                                  device=action_spec.device)
        return input_spec


def _set_done(next_tensordict: TensorDictBase, n: int) -> None:
    """One prompt per episode: every member is done after its step."""
    for key in ("done", "terminated"):
        next_tensordict.set(key, torch.ones(n, 1, dtype=torch.bool, device=next_tensordict.device))


def _write_scores(next_tensordict: TensorDictBase, rewards: Sequence[float], masked: bool,
                  answers: Sequence[str | None]) -> TensorDictBase:
    n, device = len(rewards), next_tensordict.device
    next_tensordict.set("reward", torch.tensor(rewards, dtype=torch.float32, device=device).view(n, 1, 1))
    next_tensordict.set("masked", torch.full((n, 1), bool(masked), dtype=torch.bool, device=device))
    next_tensordict.set("answer", NonTensorStack(*answers))
    return next_tensordict


def _fallback_problem(td: TensorDictBase, source: str) -> Problem:
    """A label-free Problem rebuilt from a member's keys (when the env that issued it is not reachable)."""
    first = td[0] if td.batch_dims else td
    level = int(first.get("level"))
    return Problem(id=as_str_list(first.get("problem_id"), 1)[0], prompt=as_str_list(first.get("query"), 1)[0],
                   level=None if level < 0 else level, source=source)


class _CuMaChatEnv(DenseResetChatEnv):
    """`ChatEnv` whose history-mode specs match its data (and, with `render_once`, whose text-mode reset renders
    each distinct prompt once: `cuma_env.torchrl.fast_paths.DenseResetChatEnv`, gotcha 16).

    TorchRL's `ChatHistory.default_spec` declares `tool_calls`/`tool_responses` under every History, which
    a plain chat never carries, so `check_env_specs` fails in history mode (TorchRL 0.14). The
    prompt is a one-message chat, so those two fields are dropped from the specs here.
    """

    def _make_specs_history(self):
        super()._make_specs_history()
        for spec, part in ((self.full_observation_spec, "prompt"), (self.full_action_spec, "full")):
            for field in ("tool_calls", "tool_responses"):
                if field in spec["history", part].keys():
                    del spec["history", part][field]


class CuMaTorchRLEnv(TransformedEnv):
    """A CuMa episode as a TorchRL LLM env. Build it with `cuma_env.make_torchrl_env(env_id, **kwargs)`.

    Args:
        env_id: a catalog id (`CuMa-Arith-v0`, `CuMa-Math-v0`, ...), as for `gym.make`.
        **kwargs: every keyword of the Gymnasium face (`group_size`, `reward`, `min_votes`, `levels`,
            `split`, `data_dir`, `source`, `prompt_template`, `problem_stream`, `last_number_fallback`, ...),
            validated by it, plus:
        tokenizer: the policy's tokenizer; its chat template turns the prompt into `("text", "prompt")`
            (required in text mode unless `template_kwargs` names a `chat_template`).
        input_mode: `"text"` (default) or `"history"`, as for `TransformersWrapper(input_mode=...)`.
        batch_size: env batch B (default `group_size`). B == group_size: one whole group per reset, scored
            in `step`. Otherwise a group spans several batches and `env.group_vote()` scores it in the buffer.
        scoring: `"env"` (default when B == group_size) or `"buffer"`.
        system_prompt, template_kwargs, device: passed to TorchRL's `ChatEnv`.
        seed: seeds problem drawing (also `env.set_seed`); same draws as the Gymnasium face's `reset(seed=)`.
        token_stats_key: optional input key with one float per response (e.g. self-certainty from
            `cuma_env.torchrl.token_stats.self_certainty_from_logits`), required by `reward="self_certainty"`.
        fast: True (default): render each distinct prompt once at reset into a dense batch (text mode) and
            skip the transforms' copy of each step's input (`cuma_env.torchrl.fast_paths`: `DenseResetChatEnv`,
            `InPlaceCompose`); False: TorchRL's plain path. Same outputs (tests/test_step_speed_equivalence.py).

    Keys: reset -> `query`, `problem_id`, `level` (-1: none), `group_id` (B,), `("text", "prompt")` or
    `("history", "prompt")`; step writes `("next", "done"/"terminated")` (B,1) = True. With scoring="env"
    reset also writes `masked` (B,1) and `answer` (B,), and step reads `("text", "response")` (or `full`) or
    `("history", "full")` and writes `("next", "reward")` (B,1,1), `("next", "masked")` (B,1) and
    `("next", "answer")` (B,) (str or None). With scoring="buffer" the env declares none of these three: the
    `GroupVote` of `env.group_vote()` writes them, with `advantage`, when a group is complete.
    """

    def __init__(self, env_id: str = "CuMa-Arith-v0", *, tokenizer: Any = None, input_mode: str = "text",
                 batch_size: int | None = None, scoring: str | None = None, system_prompt: str | None = None,
                 template_kwargs: dict[str, Any] | None = None, device: Any = None, seed: int | None = None,
                 token_stats_key: Any = TOKEN_STATS_KEY, fast: bool = True, **kwargs: Any):
        gym_env = CuMaEnv(env_id, **kwargs)
        group_size = gym_env.group_size
        if input_mode == "tokens":
            raise NotImplementedError("input_mode='tokens' is not offered by the CuMa env: the vote reads texts; use "
                                      "input_mode='text' with the policy's tokenizer (or 'history')")
        if input_mode not in INPUT_MODES:
            raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
        if input_mode == "text" and tokenizer is None and "chat_template" not in (template_kwargs or {}):
            raise ValueError("input_mode='text' needs the policy's tokenizer (tokenizer=...) to render the prompt "
                             "with its chat template; or use input_mode='history'")
        batch_size = group_size if batch_size is None else batch_size
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int (the env batch), got {batch_size!r}")
        scoring = scoring or ("env" if batch_size == group_size else "buffer")
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be 'env' or 'buffer', got {scoring!r}")
        if scoring == "env" and batch_size != group_size:
            raise ValueError(f"scoring='env' needs batch_size == group_size ({group_size}), got {batch_size}; "
                             "with smaller batches use scoring='buffer' and env.group_vote() on the replay buffer")
        if not list_to_stack():
            set_list_to_stack(True).set()  # TorchRL's LLM envs need it (docs/torchrl-gotchas.md, gotcha 9)
        episode = Episode(gym_env, scoring, token_stats_key)
        if seed is not None:
            gym_env.np_random = _np_random(seed)
        b = (batch_size,)
        primers = Composite(query=NonTensor(shape=b, example_data="What is 1 + 1?"),
                            problem_id=NonTensor(shape=b, example_data="arith/L1/1+1"),
                            level=Unbounded(b, dtype=torch.int64), group_id=Unbounded(b, dtype=torch.int64), shape=b)
        primer = DataLoadingPrimer(dataloader=_ProblemFeed(episode), primers=primers, repeats=group_size,
                                   batch_size=b, device=device)
        base = _CuMaChatEnv(input_mode=input_mode, batch_size=b, system_prompt=system_prompt, tokenizer=tokenizer,
                            template_kwargs=template_kwargs, device=device)
        base.render_once = bool(fast)
        super().__init__(base, (InPlaceCompose if fast else Compose)(primer, GroupScorer(episode)))
        self._episode = episode

    @property
    def episode(self) -> Episode:
        """The episode state shared with the env's transforms and its `GroupVote` (`cuma_env.torchrl.episode`)."""
        return self._episode

    @property
    def gym_env(self) -> CuMaEnv:
        """The Gymnasium face that draws the problems (same kwargs)."""
        return self._episode.gym

    @property
    def config(self):
        return self._episode.config

    @property
    def group_size(self) -> int:
        return self._episode.config.group_size

    @property
    def scoring(self) -> str:
        return self._episode.scoring

    @property
    def problem_stream(self):
        return self._episode.problem_stream

    @property
    def last_info(self) -> dict[str, Any] | None:
        """`score_group`'s info for the last group scored in `step` (scoring='env')."""
        return self._episode.last_info

    def problem_for(self, group_id: int) -> Problem | None:
        """The problem of a group still in flight (scoring='buffer'), or None."""
        return self._episode.pending.get(int(group_id))

    def group_vote(self, **kwargs: Any):
        """A `GroupVote` replay-buffer transform bound to this env (its config, reward, stream, problems)."""
        return GroupVote.from_env(self, **kwargs)

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        if seed is not None:
            self._episode.gym.np_random = _np_random(seed)
        return super().set_seed(seed, static_seed=static_seed)


def _np_random(seed: int):
    from gymnasium.utils import seeding

    return seeding.np_random(seed)[0]
