"""TRL adapter: CuMa's label-free group reward (and curricula) inside TRL's `GRPOTrainer`.

    from cuma_env.integrations.trl import catalog_dataset, make_reward_func
    reward = make_reward_func("masked_majority", min_votes=2, group_size=8)      # group_size = num_generations
    trainer = GRPOTrainer(model, reward_funcs=reward, train_dataset=catalog_dataset("CuMa-Arith-v0"),
                          args=GRPOConfig(num_generations=8, ...))

TRL calls a reward function with one process's slice of the generation batch, the G samples of a prompt next
to each other (its `RepeatSampler`). The function cuts the slice into blocks of G and scores each block with
`cuma_env.integrations.score_blocks` (the Gymnasium face's `score_group`). A masked group returns None for
every member: TRL turns None into NaN, leaves those rows out of the group mean/std and gives them advantage 0
(TRL >= 1.6). Label-free rewards never read the dataset's `answer` column (only `ground_truth`, which
declares `uses_labels`, or `label_diagnostics=True`, which logs `majority_acc` and changes no reward).

A slice holds whole groups only when `per_device_train_batch_size * steps_per_generation` is a multiple of
`num_generations`. Otherwise (several processes) the function gathers the rows of every process, votes on
whole groups and keeps its own rows (`split_groups="gather"`, the default), or stops at its first call with
one line naming the settings to change (`split_groups="error"`).

Vote diagnostics go to TRL's logs through the `log_metric` hook it passes: `cuma_env.episode.vote_metrics`, the
agent's metrics.csv columns, as `cuma/reward`, `cuma/mask_rate`, `cuma/agreement`, `cuma/collapse`,
`cuma/parse_rate`, and `cuma/level` with a curriculum.
`stream=` takes any `cuma_env.ProblemStream` (e.g. a `CurriculumFeed` over a `curricula.CurriculumStream`):
it hears `observe(info)` for every group scored, in batch order, on every process. Datasets, the curriculum
feed and its checkpoint callback: `cuma_env.integrations.trl_data`, `trl_callback`, `trl_probe`, re-exported
here. Only the reward function is imported eagerly; TRL itself is imported by the trainer, not by this module.
"""

from __future__ import annotations

import importlib.util
import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

if importlib.util.find_spec("trl") is None:
    raise ImportError('cuma_env.integrations.trl needs TRL, which is not installed: pip install "cuma-gym[trl]"')

from cuma_env.episode import EpisodeConfig, vote_metrics
from cuma_env.integrations._groups import ScoredGroup, score_blocks
from cuma_env.problems import Problem, ProblemStream
from cuma_env.rewards import make_reward
from cuma_env.voting import DEFAULT_MIN_VOTES

SPLIT_GROUPS = ("gather", "error")
NEEDS_TOKEN_STATS = ("self_certainty",)  # TRL hands a reward function no logits
DEFAULT_SOURCE = "trl"
_MASKED_WARNING = "All reward functions returned None"
_LAZY = {"catalog_dataset": "trl_data", "CurriculumFeed": "trl_data", "prompt_value": "trl_data",
         "CuMaCallback": "trl_callback", "generation_probe": "trl_probe"}

__all__ = ["GroupRewardFunc", "make_reward_func", *_LAZY]


def __getattr__(name: str) -> Any:  # PEP 562: datasets / transformers load only when these are used
    if name in _LAZY:
        module = importlib.import_module(f"cuma_env.integrations.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_reward_func(reward: Any = "masked_majority", min_votes: int | float = DEFAULT_MIN_VOTES,
                     group_size: int = 8, *, stream: ProblemStream | None = None, split_groups: str = "gather",
                     label_diagnostics: bool = False, log_prefix: str = "cuma", quiet_masked: bool = True,
                     **env_kwargs: Any) -> GroupRewardFunc:
    """A reward function with TRL's signature that scores consecutive blocks of `group_size` completions.

    Args:
        reward: a reward name of `cuma_env.rewards.REWARDS` (or a `GroupReward`); `self_certainty` is refused
            (TRL does not pass the logits it needs).
        min_votes: the mask threshold, a count or a share of the group (0.75 = 6 of 8).
        group_size: must equal `GRPOConfig.num_generations` (`CuMaCallback` checks it at trainer construction).
        stream: a `ProblemStream` told `observe(info)` for every scored group (a curriculum).
        split_groups: "gather" (vote across processes) or "error" when a process's slice splits a group.
        label_diagnostics: also read the `answer` column to log `majority_acc` (never used for rewards).
        quiet_masked: drop TRL's "All reward functions returned None" warning, which every masked group raises.
        **env_kwargs: the other `EpisodeConfig` fields (`last_number_fallback`, `empty_votes`).
    """
    return GroupRewardFunc(reward, min_votes, group_size, stream=stream, split_groups=split_groups,
                           label_diagnostics=label_diagnostics, log_prefix=log_prefix, quiet_masked=quiet_masked,
                           **env_kwargs)


class GroupRewardFunc:
    """The callable `make_reward_func` returns; `last_infos` holds the infos of the latest call's groups."""

    def __init__(self, reward: Any, min_votes: int | float, group_size: int, *, stream: ProblemStream | None,
                 split_groups: str, label_diagnostics: bool, log_prefix: str, quiet_masked: bool, **env_kwargs: Any):
        if split_groups not in SPLIT_GROUPS:
            raise ValueError(f"split_groups must be one of {SPLIT_GROUPS}, got {split_groups!r}")
        if stream is not None and not isinstance(stream, ProblemStream):
            raise TypeError(f"stream must be a cuma_env.ProblemStream (next_problem, observe), got "
                            f"{type(stream).__name__}")
        self.config = EpisodeConfig(group_size=group_size, min_votes=min_votes, reward=reward, **env_kwargs)
        self.reward = make_reward(reward)
        if self.reward.name in NEEDS_TOKEN_STATS:
            raise ValueError(f"reward {self.reward.name!r} needs per-token statistics that TRL does not pass to "
                             "reward functions; use masked_majority, majority or ground_truth")
        self.group_size = group_size
        self.stream = stream
        self.split_groups = split_groups
        self.reads_answers = bool(self.reward.uses_labels or label_diagnostics)
        self.log_prefix = log_prefix
        self.__name__ = f"cuma_{self.reward.name}"  # TRL logs rewards/<__name__>/mean
        self.last_infos: list[Mapping[str, Any]] = []
        self.calls = 0
        if quiet_masked:
            _silence_masked_warning()

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                 **kwargs: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        problems = self._problems(prompts, kwargs, len(texts))
        world, rank = _world()
        local = len(texts)
        if local % self.group_size == 0:
            scored = score_blocks(texts, self.group_size, self.config, problems)
            infos = [g.info for g in scored]
            all_infos = _gather(infos) if world > 1 and self.stream is not None else infos
        elif world > 1 and self.split_groups == "gather":
            rows = _gather(list(zip(texts, problems)))
            if len(rows) != local * world:
                raise RuntimeError(f"processes hold slices of different sizes ({len(rows)} rows in all, {local} "
                                   f"here, {world} processes); cannot cut them back after the vote")
            everything = score_blocks([t for t, _ in rows], self.group_size, self.config, [p for _, p in rows])
            all_infos = [g.info for g in everything]
            rewards = _flat_rewards(everything)[rank * local:(rank + 1) * local]
            self._finish(all_infos, all_infos, kwargs)
            return rewards
        elif world > 1:
            raise ValueError(split_message(local, self.group_size, world))
        else:
            raise ValueError(f"{local} completions are not whole groups of group_size={self.group_size}: "
                             "make_reward_func(group_size=...) must equal GRPOConfig num_generations")
        self._finish(infos, all_infos, kwargs)
        return _flat_rewards(scored)

    # --- internals ---------------------------------------------------------------------------------
    def _problems(self, prompts: Sequence[Any], columns: Mapping[str, Any], n: int) -> list[Problem]:
        """One `Problem` per row from the dataset's columns; `answer` only when this function may read it."""
        ids, levels = columns.get("problem_id"), columns.get("level")
        sources = columns.get("source")
        answers = columns.get("answer") if self.reads_answers else None
        if self.reads_answers and answers is None:
            raise ValueError(f"reward {self.reward.name!r} (or label_diagnostics=True) reads the dataset's "
                             "`answer` column, and the batch has none (catalog_dataset(..., with_answer=True))")
        problems = []
        for i in range(n):
            text = prompt_text(prompts[i]) if i < len(prompts) else ""
            pid = ids[i] if ids is not None else None
            problems.append(Problem(id=str(pid) if pid is not None else f"prompt:{zlib.crc32(text.encode()):08x}",
                                    prompt=text if text.strip() else "(prompt not given)",
                                    level=levels[i] if levels is not None else None,
                                    source=sources[i] if sources is not None else DEFAULT_SOURCE,
                                    answer=None if answers is None else answers[i]))
        return problems

    def _finish(self, local_infos: list[Mapping[str, Any]], all_infos: list[Mapping[str, Any]],
                kwargs: Mapping[str, Any]) -> None:
        """Tell the stream (every group of the global batch, on every process) and log the diagnostics."""
        self.calls += 1
        self.last_infos = list(all_infos)
        if self.stream is not None:
            for info in all_infos:
                self.stream.observe(info)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for name, value in vote_metrics(local_infos).items():
                if value is not None:
                    log_metric(f"{self.log_prefix}/{name}", value)
            level = _current_level(self.stream)
            if level is not None:
                log_metric(f"{self.log_prefix}/level", float(level))

    def __repr__(self) -> str:
        return (f"GroupRewardFunc({self.reward.name!r}, min_votes={self.config.min_votes!r}, "
                f"group_size={self.group_size}, split_groups={self.split_groups!r})")


def split_message(local: int, group_size: int, world: int) -> str:
    """The one line a split group stops with."""
    return (f"this process holds {local} completions, not whole groups of num_generations={group_size}, so a "
            f"group is split across the {world} processes: make per_device_train_batch_size x "
            f"steps_per_generation a multiple of {group_size} (or change num_generations), or use "
            "make_reward_func(split_groups='gather')")


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes a string, or (chat datasets) a list of messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        return _content_text(completion[-1].get("content"))
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def prompt_text(prompt: Any) -> str:
    """The last user message of a chat prompt, or the prompt string itself."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"]
        return _content_text(users[-1].get("content")) if users else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return ""


def _flat_rewards(scored: Sequence[ScoredGroup]) -> list[float | None]:
    return [None if g.masked else float(r) for g in scored for r in g.rewards]


def _current_level(stream: Any) -> Any:
    summary = getattr(stream, "summary", None)
    if not callable(summary):
        return None
    level = summary().get("level")
    return level if isinstance(level, (int, float)) and not isinstance(level, bool) else None


def _world() -> tuple[int, int]:
    """(number of processes, this process's index) from accelerate's shared state; (1, 0) when unset."""
    try:
        from accelerate import PartialState
    except ImportError:
        return 1, 0
    state = PartialState()
    return int(state.num_processes), int(state.process_index)


def _gather(items: list[Any]) -> list[Any]:
    """Every process's `items`, concatenated in process order (a collective: every process must call it)."""
    from accelerate.utils import gather_object

    return list(gather_object(items))


class _MaskedFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _MASKED_WARNING not in record.getMessage()


def _silence_masked_warning() -> None:
    logger = logging.getLogger("trl.trainer.grpo_trainer")
    if not any(isinstance(f, _MaskedFilter) for f in logger.filters):
        logger.addFilter(_MaskedFilter())
