"""The TorchRL face: the CuMa episode as a `torchrl.envs.llm` chat env whose batch is the group.

    env = cuma_env.make_torchrl_env("CuMa-Arith-v0", group_size=8, tokenizer=tokenizer)
    policy = TransformersWrapper(model, tokenizer=tokenizer, input_mode="text", generate_kwargs=...)
    td = env.reset(); td = env.step(policy(td))      # ("next", "reward"): (8, 1, 1), ("next", "masked"): (8, 1)

It is TorchRL's own `ChatEnv` (keys `text`/`history`, so `TransformersWrapper`/`vLLMWrapper` plug in) with
two transforms: TorchRL's `DataLoadingPrimer`, fed one problem per group and repeating it `group_size`
times (a reset of a batch of G is one group), and `GroupScorer`, which hands the G responses to the shared
`cuma_env.episode.score_group` (the Gymnasium face's code) and writes the rewards. Problems are drawn by a
private `CuMaEnv` (the Gymnasium face) built from the same kwargs, so ids, kwargs, validation, seeding and
`problem_stream` calls (`next_problem()` per group at reset, `observe(info)` once the group is scored) are
the Gymnasium face's by construction.

With `batch_size < group_size` (or `scoring="buffer"`) a group's members come in several env batches; the
env then leaves rewards at 0 and `cuma_env.torchrl.group_vote.GroupVote` (`env.group_vote()`) scores each group on
the replay-buffer write path once all its members have arrived.
"""

from __future__ import annotations

import inspect
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import NonTensorStack, TensorDict, TensorDictBase, list_to_stack, set_list_to_stack
from torchrl.data import Binary, Composite, NonTensor, Unbounded
from torchrl.data.llm import History
from torchrl.envs import Compose, Transform, TransformedEnv
from torchrl.envs.llm import ChatEnv
from torchrl.envs.llm.transforms import DataLoadingPrimer
from torchrl.modules.llm.policies.common import Text

from cuma_env.answers import extract_answer
from cuma_env.episode import score_group
from cuma_env.gym_env import CuMaEnv
from cuma_env.problems import Problem

INPUT_MODES = ("text", "history")
TOKEN_STATS_KEY = "token_stats"
MAX_PENDING_GROUPS = 10_000

_GYM_KWARGS = tuple(p for p in inspect.signature(CuMaEnv.__init__).parameters if p not in ("self", "task"))
TORCHRL_KWARGS = ("tokenizer", "input_mode", "batch_size", "scoring", "system_prompt", "template_kwargs",
                  "device", "seed", "token_stats_key", "fast")


def make_torchrl_env(env_id: str, **kwargs: Any) -> "CuMaTorchRLEnv":
    """The `env_id` episode as a TorchRL env; kwargs are the Gymnasium face's plus `TORCHRL_KWARGS`."""
    unknown = sorted(set(kwargs) - set(_GYM_KWARGS) - set(TORCHRL_KWARGS))
    if unknown:
        raise TypeError(f"make_torchrl_env({env_id!r}) got unknown keyword argument(s) {unknown}; it takes the "
                        f"Gymnasium face's {list(_GYM_KWARGS)} plus the TorchRL ones {list(TORCHRL_KWARGS)}")
    return CuMaTorchRLEnv(env_id, **kwargs)


def as_str_list(value: Any, n: int) -> list:
    """Strings (or None) of a NonTensorData/NonTensorStack/str/list entry, as a list of length `n`."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) or value is None:
        value = [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"expected {n} entries, got {len(value)}")
    return value


def read_responses(td: TensorDictBase) -> list[str]:
    """The response text of each member of a flat batch, from the `text` or the `history` keys.

    `("text", "response")` when present; else `("text", "full")` minus `("text", "prompt")`; else the content
    of the last message of `("history", "full")` (history mode).
    """
    n = td.batch_size[0]
    response = td.get(("text", "response"), None)
    if response is not None:
        return [r or "" for r in as_str_list(response, n)]
    full = td.get(("text", "full"), None)
    if full is not None:
        prompt = td.get(("text", "prompt"), None)
        prompt = as_str_list(prompt, n) if prompt is not None else [""] * n
        return [f.removeprefix(p or "") for f, p in zip(as_str_list(full, n), prompt)]
    full = td.get(("history", "full"), None)
    if full is not None:
        return [_last_content(full[i]) for i in range(n)]
    raise KeyError("no response found: expected ('text', 'response'), ('text', 'full') or ('history', 'full') "
                   f"in the tensordict; it has {sorted(map(str, td.keys(True)))}")


def _last_content(history: Any) -> str:
    content = history.content
    content = content.tolist() if hasattr(content, "tolist") else content
    while isinstance(content, list):
        content = content[-1] if content else ""
    return content or ""


def read_token_stats(td: TensorDictBase, key: Any) -> list[float] | None:
    """Per-member token statistics (e.g. self-certainty) from `key`, if present: shape (n,) or (n, 1, ...)."""
    value = td.get(key, None)
    if value is None:
        return None
    return [float(v) for v in value.reshape(td.batch_size[0], -1)[:, 0].tolist()]


class _Episode:
    """State shared by the env's two transforms and its `GroupVote`: the problems of groups in flight."""

    def __init__(self, gym_env: CuMaEnv, scoring: str, token_stats_key: Any):
        self.gym = gym_env
        self.config = gym_env.config
        self.reward_fn = gym_env.reward_fn
        self.problem_stream = gym_env.problem_stream
        self.scoring = scoring
        self.token_stats_key = token_stats_key
        self.pending: OrderedDict[int, Problem] = OrderedDict()  # group id -> problem, until scored
        self.last_info: dict[str, Any] | None = None
        self._uid = secrets.randbelow(2**30) + 1  # keeps group ids distinct across env copies / processes
        self._count = 0

    def next_group(self) -> tuple[int, Problem, str]:
        """Draws the next problem exactly as the Gymnasium face's reset does."""
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
        info = score_group(problem, completions, self.config, self.reward_fn, token_stats=token_stats)
        if self.problem_stream is not None:
            self.problem_stream.observe(info)
        self.last_info = info
        return info


class _ProblemFeed:
    """The 'dataloader' of the `DataLoadingPrimer`: one problem (TensorDict) per group, forever."""

    def __init__(self, episode: _Episode):
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
    needs the group together and no label, hence this small transform. With `scoring="buffer"` it writes
    placeholders (reward 0, masked False, the extracted answers) that `GroupVote` overwrites.
    """

    def __init__(self, episode: _Episode):
        super().__init__()
        self.episode = episode

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        n = tensordict_reset.batch_size[0]
        tensordict_reset.set("masked", torch.zeros(n, 1, dtype=torch.bool, device=tensordict_reset.device))
        tensordict_reset.set("answer", NonTensorStack(*([None] * n)))
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        ep, n = self.episode, tensordict.batch_size[0]
        if n == 0:  # nothing to score (e.g. a partial step that selected no member)
            return self._write(next_tensordict, [], False, [])
        completions = read_responses(tensordict)
        stats = read_token_stats(tensordict, ep.token_stats_key)
        if ep.scoring == "env":
            group_ids = set(tensordict.get("group_id").reshape(-1).tolist())
            if len(group_ids) != 1:
                raise RuntimeError(f"scoring='env' needs one whole group per step, got group ids {group_ids}; "
                                   "use scoring='buffer' with cuma_env.torchrl.group_vote.GroupVote")
            gid = group_ids.pop()
            problem = ep.pending.get(gid) or _fallback_problem(tensordict, ep.gym.source.name)
            info = ep.score(problem, completions, stats)
            rewards, masked, answers = info["rewards"], info["masked"], info["answers"]
        else:
            rewards, masked = [0.0] * n, False
            answers = [extract_answer(c, last_number_fallback=ep.config.last_number_fallback) for c in completions]
        return self._write(next_tensordict, rewards, masked, answers)

    @staticmethod
    def _write(next_tensordict: TensorDictBase, rewards: list, masked: bool, answers: list) -> TensorDictBase:
        n, device = len(rewards), next_tensordict.device
        next_tensordict.set("reward", torch.tensor(rewards, dtype=torch.float32, device=device).view(n, 1, 1))
        next_tensordict.set("masked", torch.full((n, 1), bool(masked), dtype=torch.bool, device=device))
        next_tensordict.set("answer", NonTensorStack(*answers))
        for key in ("done", "terminated"):  # one prompt per episode
            next_tensordict.set(key, torch.ones(n, 1, dtype=torch.bool, device=device))
        return next_tensordict

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        shape = observation_spec.shape
        observation_spec["masked"] = Binary(n=1, shape=(*shape, 1), dtype=torch.bool, device=observation_spec.device)
        observation_spec["answer"] = NonTensor(shape=shape, example_data="42", device=observation_spec.device)
        return observation_spec

    def transform_reward_spec(self, reward_spec: Composite) -> Composite:
        reward_spec["reward"] = Unbounded(shape=(*reward_spec.shape, 1, 1), dtype=torch.float32,
                                          device=reward_spec.device)
        return reward_spec

    def transform_input_spec(self, input_spec: Composite) -> Composite:
        if self.episode.reward_fn.name == "self_certainty":  # the caller must supply it with the action
            action_spec = input_spec["full_action_spec"]
            action_spec[self.episode.token_stats_key] = Unbounded(shape=action_spec.shape, dtype=torch.float32,
                                                                  device=action_spec.device)
        return input_spec


def _fallback_problem(td: TensorDictBase, source: str) -> Problem:
    """A label-free Problem rebuilt from a member's keys (when the env that issued it is not reachable)."""
    first = td[0] if td.batch_dims else td
    level = int(first.get("level"))
    return Problem(id=as_str_list(first.get("problem_id"), 1)[0], prompt=as_str_list(first.get("query"), 1)[0],
                   level=None if level < 0 else level, source=source)


class _CuMaChatEnv(ChatEnv):
    """`ChatEnv` whose history-mode specs match its data, and whose text-mode reset is built dense.

    TorchRL's `ChatHistory.default_spec` declares `tool_calls`/`tool_responses` under every History, which
    a plain chat never carries, so `check_env_specs` fails in history mode (TorchRL 0.14). The
    prompt is a one-message chat, so those two fields are dropped from the specs here.

    Text mode with `render_once` (the env's `fast=True`): `ChatEnv._reset` builds a History per member,
    renders the chat template for every member and returns a per-member lazy stack. A group repeats its
    prompt G times (128 renders for 16 prompts), and every later stage (the generator's update, the step,
    the scorer) pays per member for the lazy stack. Here each distinct query is rendered once, as the same
    one- or two-message chat `ChatEnv` builds (the env's system prompt, then the query as the user
    message), and the reset is one dense TensorDict (~18 ms less per step of 128 members on the tiny model;
    the same entries as TorchRL's path, tests/test_step_speed_equivalence.py). Anything but a batch of
    string queries (chats, History payloads) takes `ChatEnv._reset`.
    """

    render_once = False

    def _reset(self, tensordict: TensorDictBase | None, **kwargs: Any) -> TensorDictBase:
        distinct = None
        if self.render_once and self.input_mode == "text" and tensordict is not None:
            distinct = _distinct_queries(tensordict.get(self.data_key, None), self.batch_size)
        if distinct is None:
            return super()._reset(tensordict, **kwargs)
        queries, index = distinct
        system = [{"role": self.system_role, "content": self.system_prompt}] if self.system_prompt is not None else []
        chats = [system + [{"role": self.user_role, "content": query}] for query in queries]
        rendered = History.from_chats(chats).apply_chat_template(tokenizer=self.tokenizer, add_generation_prompt=True,
                                                                  **self.template_kwargs)
        rendered = [rendered] if isinstance(rendered, str) else rendered
        out = TensorDict(batch_size=self.batch_size, device=self.device)
        text = Text._from_tensordict(out.empty())  # as ChatEnv._reset_text builds it
        text.prompt = [rendered[i] for i in index]
        return out.set("text", text).update(tensordict)

    def _make_specs_history(self):
        super()._make_specs_history()
        for spec, part in ((self.full_observation_spec, "prompt"), (self.full_action_spec, "full")):
            for field in ("tool_calls", "tool_responses"):
                if field in spec["history", part].keys():
                    del spec["history", part][field]


def _distinct_queries(queries: Any, batch_size: torch.Size) -> tuple[list[str], list[int]] | None:
    """For a 1-D batch of string queries: the distinct queries in order of first appearance, and each
    member's position in that list. None when the queries are anything else (chats, History payloads)."""
    if queries is None or len(batch_size) != 1 or not hasattr(queries, "tolist"):
        return None
    values = queries.tolist()
    if not isinstance(values, list) or len(values) != batch_size[0] or not all(isinstance(v, str) for v in values):
        return None
    position: dict[str, int] = {}
    for v in values:
        position.setdefault(v, len(position))
    return list(position), [position[v] for v in values]


class _InPlaceCompose(Compose):
    """The env's transforms without `Transform.inv`'s defensive shallow copy of each step's input.

    `TransformedEnv._step` hands the action to `Compose.inv`, which copies it (~20 ms per step for 128
    lazily stacked members) before calling the inverse transforms; ours have none (`DataLoadingPrimer` and
    `GroupScorer` only act on reset/step outputs), so the copy protects nothing but the `"_step"` mask that
    `TransformedEnv._step` pops. With that key present, or once a transform with an inverse is appended,
    TorchRL's copying path is taken.
    """

    def inv(self, tensordict: TensorDictBase) -> TensorDictBase:
        if "_step" in tensordict.keys() or not all(
                type(t)._inv_call is Transform._inv_call and not t.in_keys_inv for t in self.transforms):
            return super().inv(tensordict)
        return self._inv_call(tensordict)


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
            skip the transforms' copy of each step's input (`_CuMaChatEnv`, `_InPlaceCompose`); False:
            TorchRL's plain path. Same outputs (tests/test_step_speed_equivalence.py).

    Keys: reset -> `query`, `problem_id`, `level` (-1: none), `group_id` (B,), `("text", "prompt")` or
    `("history", "prompt")`, `masked` (B,1), `answer` (B,); step reads `("text", "response")` (or `full`) or
    `("history", "full")` and writes `("next", "reward")` (B,1,1), `("next", "masked")` (B,1),
    `("next", "answer")` (B,) (str or None), `("next", "done"/"terminated")` (B,1) = True.
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
        if scoring not in ("env", "buffer"):
            raise ValueError(f"scoring must be 'env' or 'buffer', got {scoring!r}")
        if scoring == "env" and batch_size != group_size:
            raise ValueError(f"scoring='env' needs batch_size == group_size ({group_size}), got {batch_size}; "
                             "with smaller batches use scoring='buffer' and env.group_vote() on the replay buffer")
        if not list_to_stack():
            set_list_to_stack(True).set()  # TorchRL's LLM envs need it (docs/torchrl-gotchas.md, gotcha 9)
        episode = _Episode(gym_env, scoring, token_stats_key)
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
        super().__init__(base, (_InPlaceCompose if fast else Compose)(primer, GroupScorer(episode)))
        self._episode = episode

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
        from cuma_env.torchrl.group_vote import GroupVote

        return GroupVote.from_env(self, **kwargs)

    def set_seed(self, seed: int | None = None, static_seed: bool = False) -> int | None:
        if seed is not None:
            self._episode.gym.np_random = _np_random(seed)
        return super().set_seed(seed, static_seed=static_seed)


def _np_random(seed: int):
    from gymnasium.utils import seeding

    return seeding.np_random(seed)[0]
