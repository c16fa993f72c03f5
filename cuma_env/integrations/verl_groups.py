"""verl's batch as CuMa groups: rows grouped by verl's `uid`, voted on, and handed back as verl's reward.

verl's trainer tags every prompt with a `uid` and repeats it n times, so the n samples of a prompt share a
uid (they are adjacent after the repeat, but verl's `balance_batch` may reorder rows, so grouping goes by
uid, never by position). This module reads such a batch (`prompts`, `responses`, `attention_mask`, and the
non-tensor `uid`, `data_source`, `reward_model`, `extra_info`), votes on each uid's group with the shared
`score_blocks`, and returns what verl's reward managers return: a token-level reward tensor (the reward on
each response's last valid token) and per-row extra info. It imports neither verl nor torch (tensors are
built with their own methods), so the test suite runs it on a stand-in batch and `integrations/verl.py` is
only the registration layer.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cuma_env.episode import EpisodeConfig
from cuma_env.integrations._groups import ScoredGroup, placeholder_problem, score_blocks
from cuma_env.problems import LEVELS, Problem, ProblemStream

# Per-row extra info returned to verl (one list per key, one value per row; None where not defined).
# `acc` is the labelled diagnostic (agreement with `reward_model.ground_truth`); label-free rewards never read it.
EXTRA_KEYS = ("score", "masked", "agreement", "majority", "answer", "group_size", "acc")
CONFIG_KEYS = ("reward", "min_votes", "empty_votes", "last_number_fallback")


def episode_config(kwargs: Mapping[str, Any] | None = None) -> EpisodeConfig:
    """The vote's settings from verl's `reward_kwargs` (`reward`, `min_votes`, `empty_votes`,
    `last_number_fallback`); the group size always comes from the batch, so it is not a setting here."""
    kwargs = dict(kwargs or {})
    unknown = sorted(set(kwargs) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown CuMa reward setting(s) {unknown}; the verl reward managers take {list(CONFIG_KEYS)}")
    count = kwargs.get("min_votes")
    if isinstance(count, float) and count.is_integer() and count > 1:
        kwargs["min_votes"] = count = int(count)  # YAML/CLI may hand a count as 2.0
    # group_size is a placeholder (each group's own size replaces it); it only has to admit a count.
    is_count = isinstance(count, numbers.Integral) and not isinstance(count, bool) and count >= 1
    return EpisodeConfig(group_size=int(count) if is_count else EpisodeConfig().group_size, **kwargs)


def group_rows(uids: Sequence[Hashable]) -> list[list[int]]:
    """Row indices per uid, groups in order of first appearance, rows in batch order within a group."""
    groups: dict[Hashable, list[int]] = {}
    for i, uid in enumerate(uids):
        if uid is None:
            raise ValueError(f"row {i} has no uid: verl's trainer tags every prompt with one before the rollout")
        try:
            groups.setdefault(uid, []).append(i)
        except TypeError:
            raise TypeError(f"row {i}: uid must be hashable (verl uses uuid strings), got {type(uid).__name__}") \
                from None
    return list(groups.values())


def score_group_rows(completions: Sequence[str], config: EpisodeConfig, problem: Problem | None = None,
                     stream: ProblemStream | None = None) -> ScoredGroup:
    """Vote on one group of any size with `score_blocks`.

    A group smaller than an integer `min_votes` (a validation pass with one sample per prompt, a padding row
    scored on its own) cannot reach the threshold: it is voted on as a whole and, for the vote-masked reward
    `masked_majority`, masked with zero rewards, which is what a vote of that size means.
    """
    size = len(completions)
    if size == 0:
        raise ValueError("a group needs at least one completion")
    count = config.min_votes if isinstance(config.min_votes, numbers.Integral) else None
    short = count is not None and count > size
    used = dataclasses.replace(config, min_votes=1.0) if short else config
    scored = score_blocks(list(completions), size, used, problems=None if problem is None else [problem],
                          stream=None if short else stream)[0]
    if short and scored.info.get("reward_name") == "masked_majority":
        info = {**scored.info, "masked": True, "rewards": [0.0] * size}
        scored = ScoredGroup(rewards=(0.0,) * size, masked=True, info=info)
    if short and stream is not None:
        stream.observe(scored.info)
    return scored


def row_rewards(scored: ScoredGroup) -> list[tuple[float, dict[str, Any]]]:
    """(reward, extra info) per member; a masked group's members get 0.0 (equal rewards: no GRPO signal)."""
    info = scored.info
    correct = info.get("correct")
    out = []
    for j, reward in enumerate(scored.rewards):
        value = 0.0 if scored.masked else float(reward)
        out.append((value, {
            "score": value, "masked": bool(scored.masked), "agreement": float(info["agreement"]),
            "majority": info["majority"], "answer": info["answers"][j], "group_size": int(info["group_size"]),
            "acc": None if correct is None else float(bool(correct[j])),
        }))
    return out


@dataclass(frozen=True)
class ScoredRows:
    """A scored batch: one reward and one extra-info value per row, and the groups as voted."""

    rewards: list[float]
    extra: dict[str, list[Any]]
    groups: list[ScoredGroup]


def score_rows(completions: Sequence[str], uids: Sequence[Hashable], config: EpisodeConfig,
               problems: Sequence[Problem | None] | None = None,
               stream: ProblemStream | None = None) -> ScoredRows:
    """Group rows by uid, vote on each group, scatter rewards and extra info back to row order.

    `problems` is one per row (a group takes its first row's) or None. `stream` hears each group's info.
    """
    if len(uids) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(uids)} uids")
    if problems is not None and len(problems) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(problems)} problems")
    rewards: list[float] = [0.0] * len(completions)
    extra: dict[str, list[Any]] = {key: [None] * len(completions) for key in EXTRA_KEYS}
    groups = []
    for rows in group_rows(uids):
        problem = None if problems is None else problems[rows[0]]
        scored = score_group_rows([completions[i] for i in rows], config, problem, stream)
        groups.append(scored)
        for i, (value, info) in zip(rows, row_rewards(scored)):
            rewards[i] = value
            for key in EXTRA_KEYS:
                extra[key][i] = info[key]
    return ScoredRows(rewards=rewards, extra=extra, groups=groups)


# ---- reading verl's batch (DataProto or its stand-in: `.batch` tensors, `.non_tensor_batch` arrays) ----

def response_lengths(batch: Mapping[str, Any]) -> list[int]:
    """Valid response tokens per row: the attention mask past the (left-padded) prompt, as verl counts them."""
    prompt_len = batch["prompts"].shape[-1]
    return [int(n) for n in batch["attention_mask"][:, prompt_len:].sum(-1).tolist()]


def decode_row(batch: Mapping[str, Any], tokenizer: Any, i: int, length: int) -> str:
    """Row i's response text (special tokens dropped, as verl's managers decode it)."""
    return tokenizer.decode(batch["responses"][i][:length], skip_special_tokens=True)


def decode_prompt(batch: Mapping[str, Any], tokenizer: Any, i: int) -> str:
    prompt = batch["prompts"][i]
    valid = int(batch["attention_mask"][i][:prompt.shape[-1]].sum())
    return tokenizer.decode(prompt[prompt.shape[-1] - valid:], skip_special_tokens=True) if valid else ""


def row_problem(non_tensor: Mapping[str, Any], i: int, prompt: str | None = None,
                source_key: str = "data_source") -> Problem:
    """The problem behind row i: `reward_model.ground_truth` is the hidden answer (diagnostics and the labelled
    `ground_truth` reward only), `extra_info.level`/`index` give level and id when the dataset has them."""
    reward_model = _item(non_tensor, "reward_model", i) or {}
    extra_info = _item(non_tensor, "extra_info", i) or {}
    truth = reward_model.get("ground_truth") if isinstance(reward_model, Mapping) else None
    level = extra_info.get("level") if isinstance(extra_info, Mapping) else None
    index = extra_info.get("index") if isinstance(extra_info, Mapping) else None
    uid = _item(non_tensor, "uid", i)
    source = _item(non_tensor, source_key, i)
    base = placeholder_problem(prompt, problem_id=str(index if index is not None else uid))
    return dataclasses.replace(base, source=str(source) if source is not None else base.source,
                               answer=None if truth is None else str(truth),
                               level=level if level in LEVELS else None)


def last_token_rewards(responses: Any, lengths: Sequence[int], rewards: Sequence[float]) -> Any:
    """verl's token-level reward: zeros shaped like `responses` (float32), each row's reward on its last valid
    token (position 0 for an empty response, whose tokens are all masked anyway)."""
    out = responses.new_zeros(tuple(responses.shape)).float()
    for i, (length, reward) in enumerate(zip(lengths, rewards)):
        out[i, max(int(length) - 1, 0)] = float(reward)
    return out


def score_verl_batch(data: Any, tokenizer: Any, config: EpisodeConfig, stream: ProblemStream | None = None,
                     source_key: str = "data_source") -> dict[str, Any]:
    """verl's `{"reward_tensor", "reward_extra_info"}` for a whole batch, groups found by `uid`."""
    batch, non_tensor = data.batch, data.non_tensor_batch
    if "uid" not in non_tensor:
        raise KeyError("the batch has no 'uid' column: the group reward needs verl's prompt uids (the PPO trainer "
                       "adds them before the rollout)")
    lengths = response_lengths(batch)
    n_rows = len(lengths)
    texts = [decode_row(batch, tokenizer, i, lengths[i]) for i in range(n_rows)]
    uids = [_item(non_tensor, "uid", i) for i in range(n_rows)]
    firsts = {rows[0] for rows in group_rows(uids)}
    problems = [row_problem(non_tensor, i, decode_prompt(batch, tokenizer, i), source_key) if i in firsts else None
                for i in range(n_rows)]
    scored = score_rows(texts, uids, config, problems, stream)
    return {"reward_tensor": last_token_rewards(batch["responses"], lengths, scored.rewards),
            "reward_extra_info": scored.extra}


# ---- one sample at a time (verl's reward loop, >= 0.7.1): the pieces `GroupRendezvous` needs ----

def read_sample(data: Any, tokenizer: Any, source_key: str = "data_source") -> tuple[Hashable, str, Problem]:
    """(uid, response text, problem) of the last row of a reward-loop sample (its final turn)."""
    last = len(response_lengths(data.batch)) - 1
    length = response_lengths(data.batch)[last]
    uid = _item(data.non_tensor_batch, "uid", last)
    if uid is None:
        raise KeyError("the sample has no 'uid': the group reward needs verl's prompt uids")
    problem = row_problem(data.non_tensor_batch, last, decode_prompt(data.batch, tokenizer, last), source_key)
    return uid, decode_row(data.batch, tokenizer, last, length), problem


def expected_group_size(data: Any, rollout_n: int, val_n: int) -> int:
    """How many samples of a uid to wait for: `val_n` for a sample flagged `validate` (verl's v1 trainer
    flags them in the sample, older trainers in `meta_info`), else `rollout_n`."""
    flag = _item(data.non_tensor_batch, "validate", 0)
    validate = bool(flag) if flag is not None else bool(getattr(data, "meta_info", {}).get("validate", False))
    return int(val_n if validate else rollout_n)


def score_members(members: Sequence[tuple[str, Problem | None]],
                  config: EpisodeConfig) -> list[tuple[float, dict[str, Any]]]:
    """(reward, extra info) per member of one reassembled group, in arrival order."""
    texts = [text for text, _ in members]
    scored = score_rows(texts, [0] * len(texts), config, [problem for _, problem in members])
    return [(scored.rewards[j], {key: values[j] for key, values in scored.extra.items()}) for j in range(len(texts))]


def _item(non_tensor: Mapping[str, Any], key: str, i: int) -> Any:
    column = non_tensor.get(key) if hasattr(non_tensor, "get") else None
    if column is None:
        return None
    value = column[i]
    return value.item() if hasattr(value, "item") and getattr(value, "shape", None) == () else value
