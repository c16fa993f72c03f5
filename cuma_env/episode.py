"""Scoring one episode: a problem and its group of completions in, rewards and statistics out.

Both environment faces (Gymnasium and TorchRL) and the replay-buffer group-vote transform call
`score_group`, so they agree exactly on answers, votes, rewards and the info a curriculum reads. A batch's
infos become the logged metrics in one place (`vote_metrics`, `collapse`), and a curriculum's probe hook is
one closure (`probe_hook`) whatever samples the groups, so every trainer logs and probes alike.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cuma_env.answers import extract_answer
from cuma_env.problems import Problem
from cuma_env.prompting import format_prompt, resolve_template
from cuma_env.rewards import Group, GroupReward, make_reward, reference_correctness
from cuma_env.voting import DEFAULT_MIN_VOTES, majority_vote, resolve_min_votes


@dataclass(frozen=True)
class EpisodeConfig:
    """The knobs of an episode that every face shares (validated once, here)."""

    group_size: int = 8
    min_votes: int | float = DEFAULT_MIN_VOTES
    reward: Any = "masked_majority"
    last_number_fallback: bool = True
    empty_votes: bool = False  # unparsable answers form a cluster that votes (TTRL's code); default: never vote

    def __post_init__(self) -> None:
        if not isinstance(self.group_size, int) or isinstance(self.group_size, bool) or self.group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {self.group_size!r}")
        resolve_min_votes(self.min_votes, self.group_size, within_group=True)
        if not isinstance(self.empty_votes, bool):
            raise ValueError(f"empty_votes must be a bool, got {self.empty_votes!r}")
        make_reward(self.reward)  # fail fast on an unknown reward name


def check_completions(completions: Any, group_size: int) -> tuple[str, ...]:
    """The group as a tuple of strings, or one clear error saying what was wrong."""
    if isinstance(completions, (str, bytes)):
        raise TypeError(f"step() takes a group of {group_size} completion strings, got a single "
                        f"{type(completions).__name__}; wrap it in a list")
    try:
        group = tuple(completions)
    except TypeError:
        raise TypeError(f"step() takes a sequence of {group_size} strings, got {type(completions).__name__}") from None
    if len(group) != group_size:
        raise ValueError(f"step() takes exactly group_size={group_size} completions, got {len(group)}")
    bad = [i for i, c in enumerate(group) if not isinstance(c, str)]
    if bad:
        raise TypeError(f"every completion must be a str; positions {bad} are "
                        f"{sorted({type(group[i]).__name__ for i in bad})}")
    return group


def score_group(problem: Problem, completions: Sequence[str], config: EpisodeConfig,
                reward: GroupReward | None = None, token_stats: Sequence[float] | None = None) -> dict[str, Any]:
    """Extract, vote, reward. Returns the step `info` dict (documented in the README)."""
    completions = check_completions(completions, config.group_size)
    reward = reward if reward is not None else make_reward(config.reward)
    answers = tuple(extract_answer(c, last_number_fallback=config.last_number_fallback) for c in completions)
    vote = majority_vote(answers, min_votes=config.min_votes, empty_votes=config.empty_votes)
    group = Group(problem=problem, completions=completions, answers=answers, vote=vote,
                  token_stats=None if token_stats is None else tuple(float(v) for v in token_stats))
    outcome = reward(group)
    if len(outcome.rewards) != config.group_size:
        raise ValueError(f"reward {reward.name!r} returned {len(outcome.rewards)} rewards for a group of "
                         f"{config.group_size}")
    info: dict[str, Any] = {
        "rewards": list(outcome.rewards),
        "masked": bool(outcome.masked),
        "majority": vote.label,
        "majority_count": vote.count,
        "agreement": vote.agreement,
        "parse_rate": vote.parse_rate,
        "answers": list(answers),
        "level": problem.level,
        "problem_id": problem.id,
        "source": problem.source,
        "group_size": config.group_size,
        "reward_name": reward.name,
    }
    correct = reference_correctness(group)
    if correct is not None:  # diagnostics only: never read by label-free rewards
        label_cluster = vote.clusters[0] if vote.clusters else ()
        info["correct"] = list(correct)
        info["majority_correct"] = bool(label_cluster) and correct[label_cluster[0]]
    return info


def probe_hook(sample: Callable[[list[str]], Sequence[Sequence[str]]], template: str, config: EpisodeConfig):
    """A curriculum's probe hook, `probe(level, problems) -> list[info]`: `sample(prompts)` gives a group per
    formatted prompt (sampled without training), scored with the masked-majority vote of `config`'s knobs
    (a schedule reads the vote statistics, not rewards, so rewards needing token statistics are not computed)."""
    template = resolve_template(template)
    config = dataclasses.replace(config, reward="masked_majority")

    def probe(level: Any, problems: Sequence[Problem]) -> list[dict[str, Any]]:
        groups = sample([format_prompt(p, template) for p in problems])
        return [score_group(p, g, config) for p, g in zip(problems, groups)]

    return probe


def vote_metrics(infos: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """A batch's vote statistics, as every trainer logs them (the agent's metrics.csv, TRL's `cuma/...`):
    reward, mask_rate, agreement, parse_rate, `collapse`; against the hidden answers, when the infos carry them
    (diagnostics only), majority_acc and pass_rate. None where no group (or no labelled group) has the value."""
    mean = lambda xs: statistics.fmean(xs) if xs else None  # noqa: E731
    labelled = [float(i["majority_correct"]) for i in infos if "majority_correct" in i]
    return {
        "reward": mean([float(r) for i in infos for r in i["rewards"]]),
        "mask_rate": mean([float(i["masked"]) for i in infos]),
        "agreement": mean([float(i["agreement"]) for i in infos]),
        "majority_acc": mean(labelled),
        "pass_rate": mean([float(c) for i in infos for c in i.get("correct", [])]),
        "collapse": collapse(infos) if infos else None,
        "parse_rate": mean([float(i["parse_rate"]) for i in infos]),
    }


def collapse(infos: Iterable[Mapping[str, Any]]) -> float:
    """The logged collapse sign: `prompt_concentration` of the groups' (problem_id, majority) pairs, the share of
    the distinct prompts whose majority is the most common one (1.0 = one answer everywhere)."""
    return prompt_concentration((i.get("problem_id"), i.get("majority")) for i in infos)[0]


def prompt_concentration(pairs: Iterable[tuple[Hashable | None, str | None]]) -> tuple[float, int]:
    """Answer concentration over distinct prompts: the share of the most common majority answer among the
    (problem_id, majority) pairs, and how many prompts that share is over.

    The label-free collapse sign of the paper: a model that emits one constant answer agrees with itself on
    every prompt. One majority per distinct prompt (the latest wins, so a prompt seen again is not counted
    twice; a None id counts as its own prompt); groups without a majority are left out. Uses exact labels:
    majority labels are already canonical per group. The curriculum's collapse guard reads it over a window.
    """
    latest: dict[Hashable, str] = {}
    for i, (pid, majority) in enumerate(pairs):
        if majority is None:
            continue
        latest[pid if pid is not None else ("#anon", i)] = majority
    if not latest:
        return 0.0, 0
    top = Counter(latest.values()).most_common(1)[0][1]
    return top / len(latest), len(latest)
