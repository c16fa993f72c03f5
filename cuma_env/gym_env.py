"""The Gymnasium face: one prompt per episode, the whole group of completions as one action.

    obs, info = env.reset(seed=0)                 # prompt text; info: level, problem_id (never the answer)
    obs, r, terminated, truncated, info = env.step(completions)   # G strings -> mean reward, terminated=True

The label-free reward sees the group together (majority vote + mask), which is why the action is the
group rather than one completion. `CuMaEnv`'s docstring is the environment's spec in Gymnasium's sections
(spaces, rewards, episode end, arguments); tests/test_docs_examples.py runs its examples.
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
from cuma_env.voting import DEFAULT_MIN_VOTES

DEFAULT_GROUP_SIZE = 8


class CuMaEnv(gym.Env):
    r"""A label-free math episode: one prompt, a group of G completions, rewards from the group's own vote.

    ## Description

    CuMa gym's Gymnasium face of *"You Need Reasoning to Learn Reasoning: The Limitations of Label-Free RL
    in Weak Base Models"* (CuMa, arXiv 2511.04902). Label-free RL rewards a completion for agreeing with the
    majority answer of the policy's own G samples of the same prompt, so the reward is a function of the
    whole group: the action is the group, and one episode is one prompt. Registered ids (all with this
    class): `CuMa-Math-v0` (MATH, levels 1-5), `CuMa-GSM8K-v0`, `CuMa-Arith-v0` (procedural, levels 1-5,
    needs no data files), `CuMa-AIME24-v0` and `CuMa-AMC23-v0` (`split="test"` only). The hidden reference
    answer is never shown to the policy nor read by a label-free reward.

    ## Action Space

    A `Tuple` of `group_size` `cuma_env.MathText(0, max_completion_chars)` spaces: exactly G completion
    strings, one per sample, in any order. Any `str` within the length bound is valid (LaTeX, unicode,
    newlines, the empty string). `cuma_env.Completions(texts, token_stats=...)` is such a tuple that also
    carries one float per completion for the `self_certainty` reward. A bare `str`, a wrong count or a
    non-string raise `TypeError` / `ValueError` naming what was wrong.

    ## Observation Space

    `cuma_env.MathText(1, max_prompt_chars)`: the prompt text, the problem rendered through
    `prompt_template`. Both built-in templates ask for the final answer in `\boxed{}` (`compact`, the
    default of `CuMa-Arith-v0`: `"{problem} Answer in \boxed{}."`). `step` returns the same prompt again.

    ## Rewards

    `step` returns the mean of the G per-completion rewards; `info["rewards"]` holds each one. Each
    completion's answer is extracted (`cuma_env.extract_answer`: the last `\boxed{}` or "the answer is"
    phrase; the last number when nothing is marked and `last_number_fallback=True`) and equivalent answers
    vote as one cluster (`1/2` and `0.5`; docs/grading.md). A completion with no answer never votes, unless
    `empty_votes=True` (TTRL's own code: the unanswered vote together as one cluster and can win). Ties go to
    the cluster whose first member comes first.

    | `reward`          | per-completion reward                                       | masks?                        |
    |-------------------|-------------------------------------------------------------|-------------------------------|
    | `masked_majority` | 1 in the largest cluster, else 0 (CuMa, the default)        | largest cluster < `min_votes` |
    | `majority`        | 1 in the largest cluster, else 0 (TTRL)                     | never                         |
    | `self_certainty`  | the caller's `token_stats` value (Intuitor)                 | never                         |
    | `ground_truth`    | 1 if equivalent to the hidden answer (labelled upper bound) | never                         |
    | `random_reward`   | a fair 0/1 coin per completion (spurious-reward control)    | never                         |
    | `format_only`     | 1 for any parsed answer, right or wrong (control)           | never                         |
    | `cluster_share`   | its answer cluster's share of G, unanswered 0 (EMPO)        | never                         |
    | a callable        | `fn(group) -> GroupOutcome` or G floats                     | if it returns `masked=True`   |
    | `"module:attr"`   | the reward class, instance or function it names             | as that reward does           |

    `min_votes` is a count (`2`: some answer occurs twice) or a share of the group rounded up (`0.75`: 6 of
    8, 3 of 4). A masked group gets 0 for every completion and carries no learning signal (`info["masked"]`).

    ## Starting State

    `reset(seed=...)` draws a level uniformly from `levels`, then a problem uniformly within it, from the
    env's `np_random`: the same seed gives the same prompt. `options={"level": k}` draws from level k;
    `options={"problem": cuma_env.Problem(...)}` poses that problem. With a `problem_stream` (e.g. a
    curriculum) the stream picks each problem unless `options` does, and it is told every scored group. The
    reset `info` has `level`, `problem_id`, `source` and `group_size`, never the answer.

    ## Episode End

    Every episode is one step: `step` returns `terminated=True` and `truncated=False`, always; there is no
    time limit. Call `reset()` for the next prompt; `step` before the first `reset` raises `ResetNeeded`.

    ## Info

    After `step`: `rewards` (G floats), `masked`, `majority` and `majority_count` (the winning answer and its
    cluster size: None / 0 when nothing parsed; None / the count when the unanswered win under
    `empty_votes=True`), `agreement` (largest cluster / G), `parse_rate` (share of completions with an
    answer), `answers` (each extracted answer or None), `level`, `problem_id`, `source`, `group_size`,
    `reward_name`; and, only when the problem has a reference answer, the diagnostics `correct` (per
    completion) and `majority_correct`, which no label-free reward reads.

    ## Arguments

    ```python
    >>> import gymnasium as gym
    >>> import cuma_env  # registers the ids; gym.make("cuma_env:CuMa-Arith-v0") works without it
    >>> env = gym.make("CuMa-Arith-v0", group_size=4)
    >>> env
    <OrderEnforcing<PassiveEnvChecker<CuMaEnv<CuMa-Arith-v0>>>>
    >>> env.observation_space, env.action_space.spaces[0], len(env.action_space.spaces)
    (MathText(1, 16384), MathText(0, 32768), 4)
    >>> prompt, info = env.reset(seed=0)
    >>> prompt
    'What is 53 + 43 - 81? Answer in \\boxed{}.'
    >>> info
    {'level': 5, 'problem_id': 'arith/L5/53+43-81', 'source': 'arith', 'group_size': 4}
    >>> group = [r"\boxed{15}", r"so \boxed{15}", r"\boxed{7}", "no idea"]
    >>> prompt, reward, terminated, truncated, info = env.step(group)
    >>> reward, terminated, truncated
    (0.5, True, False)
    >>> info["answers"], info["majority"], info["majority_count"], info["masked"], info["rewards"]
    (['15', '15', '7', None], '15', 2, False, [1.0, 1.0, 0.0, 0.0])
    >>> info["agreement"], info["parse_rate"], info["majority_correct"]
    (0.5, 0.75, True)
    >>> env.reset(seed=0, options={"level": 1})[0]
    'What is 8 + 6? Answer in \\boxed{}.'

    ```

    A stricter mask, and TTRL's vote in which the unanswered completions win:

    ```python
    >>> strict = gym.make("CuMa-Arith-v0", group_size=4, min_votes=0.75)  # 3 of 4 must agree
    >>> _ = strict.reset(seed=0)
    >>> info = strict.step(group)[4]
    >>> info["masked"], info["rewards"]
    (True, [0.0, 0.0, 0.0, 0.0])
    >>> ttrl = gym.make("CuMa-Arith-v0", group_size=4, reward="majority", empty_votes=True)
    >>> _ = ttrl.reset(seed=0)
    >>> info = ttrl.step(["no idea", "", r"\boxed{15}", "hmm"])[4]
    >>> info["majority"], info["majority_count"], info["rewards"]
    (None, 3, [1.0, 1.0, 0.0, 1.0])

    ```

    | Parameter | Type | Default | Description |
    |---|---|---|---|
    | `task` | str | set by the id | the environment id whose problems and template to use |
    | `group_size` | int | `8` | G, completions per prompt; `step` takes exactly this many |
    | `reward` | str or callable | `"masked_majority"` | see Rewards; also a `cuma.rewards` plugin's name |
    | `min_votes` | int or float | `2` | mask threshold: a count, or a share of the group in (0, 1] |
    | `levels` | sequence of int | all the source has | difficulty levels to draw from (levelled ids only) |
    | `split` | str | `"train"` | `"train"`, `"validation"` (held out, for tuning; `CuMa-Arith-v0` only) or `"test"` |
    | `data_dir` | path | `$CUMA_DATA_DIR` | folder of the benchmark files (not needed by `CuMa-Arith-v0`) |
    | `source` | ProblemSource | the task's | your own problems instead of the task's |
    | `prompt_template` | str | the task's | `"default"`, `"compact"`, or a string with `{problem}` |
    | `problem_stream` | ProblemStream | None | picks each problem and observes each scored group |
    | `last_number_fallback` | bool | `True` | unmarked text's last number is its answer (docs/grading.md: when safe) |
    | `empty_votes` | bool | `False` | the unanswered vote as one cluster (TTRL's code) |
    | `max_prompt_chars` | int | `16384` | the observation space's length bound |
    | `max_completion_chars` | int | `32768` | each action string's length bound |
    | `render_mode` | str | None | `"ansi"`: `render()` returns the prompt and the last vote as text |

    ## Version History

    * v0: the first version. `empty_votes` came later with the default `False`, which keeps v0's votes.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, task: str = "CuMa-Arith-v0", *, group_size: int = DEFAULT_GROUP_SIZE,
                 reward: Any = "masked_majority", min_votes: int | float = DEFAULT_MIN_VOTES,
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
