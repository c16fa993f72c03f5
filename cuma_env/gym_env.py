"""The Gymnasium face: one prompt per episode, the whole group of completions as one action.

    obs, info = env.reset(seed=0)                 # prompt text; info: level, problem_id (never the answer)
    obs, r, terminated, truncated, info = env.step(completions)   # G strings -> mean reward, terminated=True

The label-free reward sees the group together (majority vote + mask), which is why the action is the
group rather than one completion. Per-response rewards and the vote are in `info` (see `score_group`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from cuma_env.answers import prewarm
from cuma_env.catalog import SPLITS, get_task, make_source
from cuma_env.episode import EpisodeConfig, score_group
from cuma_env.problems import Problem, ProblemSource, ProblemStream
from cuma_env.prompting import format_prompt, resolve_template
from cuma_env.rewards import make_reward
from cuma_env.spaces import MathText, group_action_space

DEFAULT_GROUP_SIZE = 8


class CuMaEnv(gym.Env):
    """A label-free math episode. Registered as `CuMa-Math-v0`, `CuMa-GSM8K-v0`, `CuMa-Arith-v0`, ...

    Args:
        task: environment id whose problem source and prompt template to use.
        group_size: completions per prompt (G); `step` takes exactly this many strings.
        reward: `masked_majority` (CuMa, default), `majority` (TTRL), `self_certainty` (Intuitor; pass
            `cuma_env.Completions(texts, token_stats=...)`), `ground_truth` (labelled), or a callable.
        min_votes: mask threshold: an int count, or a float share of the group (0.75 = 6 of 8).
        levels: difficulty levels to draw from (default: all the source has).
        split: `train` or `test`.
        data_dir: folder of the data files (default `$CUMA_DATA_DIR`).
        source: a `ProblemSource` to use instead of the task's own.
        prompt_template: `default`, `compact`, or a string with `{problem}` (default: the task's).
        problem_stream: a `ProblemStream` (e.g. a curriculum) that picks each episode's problem and is
            told each scored group.
        last_number_fallback: let `extract_answer` fall back to the last number when no answer is marked.
        empty_votes: unparsable answers vote together as one cluster and can win (TTRL's own code); by default
            they never vote, so emptiness is never rewarded.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, task: str = "CuMa-Arith-v0", *, group_size: int = DEFAULT_GROUP_SIZE,
                 reward: Any = "masked_majority", min_votes: int | float = 2,
                 levels: Sequence[int] | None = None, split: str = "train",
                 data_dir: str | os.PathLike | None = None, source: ProblemSource | None = None,
                 prompt_template: str | None = None, problem_stream: ProblemStream | None = None,
                 last_number_fallback: bool = True, empty_votes: bool = False, max_prompt_chars: int = 16_384,
                 max_completion_chars: int = 32_768, render_mode: str | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.task = get_task(task)
        self.config = EpisodeConfig(group_size=group_size, min_votes=min_votes, reward=reward,
                                    last_number_fallback=last_number_fallback, empty_votes=empty_votes)
        self.reward_fn = make_reward(reward)
        self.source = source if source is not None else make_source(task, split, levels, data_dir)
        self.levels = tuple(levels) if levels is not None else tuple(self.source.levels)
        self.template = resolve_template(prompt_template or self.task.template)
        self.problem_stream = problem_stream
        self.render_mode = render_mode
        self.observation_space = MathText(max_prompt_chars, min_length=1)
        self.action_space = group_action_space(group_size, max_completion_chars)
        if any(self.task.datasets.values()):  # real-data answers may need sympy: start its worker early
            prewarm()
        self.problem: Problem | None = None
        self._last_info: dict[str, Any] | None = None

    @property
    def group_size(self) -> int:
        return self.config.group_size

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. `options`: `{"problem": Problem}` or `{"level": k}` to choose what comes next."""
        super().reset(seed=seed)
        options = options or {}
        if "problem" in options:
            problem = options["problem"]
            if not isinstance(problem, Problem):
                raise TypeError(f"options['problem'] must be a cuma_env.Problem, got {type(problem).__name__}")
        elif self.problem_stream is not None and "level" not in options:
            problem = self.problem_stream.next_problem()
        else:
            problem = self._draw(options.get("level"))
        self.problem = problem
        self._last_info = None
        return self._prompt(), {"level": problem.level, "problem_id": problem.id, "source": problem.source,
                                "group_size": self.group_size}

    def step(self, action: Sequence[str]):
        if self.problem is None:
            raise ResetNeeded("call reset() before step(): each episode is one prompt")
        info = score_group(self.problem, action, self.config, self.reward_fn,
                           token_stats=getattr(action, "token_stats", None))
        if self.problem_stream is not None:
            self.problem_stream.observe(info)
        self._last_info = info
        return self._prompt(), float(np.mean(info["rewards"])), True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self.problem is None:
            return None
        text = f"[{self.problem.id} L{self.problem.level}] {self._prompt()}"
        if self._last_info is not None:
            i = self._last_info
            text += (f"\n  answers={i['answers']}\n  majority={i['majority']!r} masked={i['masked']} "
                     f"rewards={i['rewards']}")
        return text

    def _draw(self, level: int | None) -> Problem:
        if level is None:
            level = self.levels[int(self.np_random.integers(len(self.levels)))]
        elif level not in self.levels:
            raise ValueError(f"level {level!r} is not among this env's levels {self.levels}")
        size = self.source.size(level)
        return self.source.get(level, int(self.np_random.integers(size)))

    def _prompt(self) -> str:
        return format_prompt(self.problem, self.template)
