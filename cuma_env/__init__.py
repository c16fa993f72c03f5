"""CuMa gym: label-free group rewards for LLM math reasoning, as Gymnasium and TorchRL environments.

    import gymnasium as gym, cuma_env
    env = gym.make("CuMa-Arith-v0", group_size=8)       # or gym.make("cuma_env:CuMa-Math-v0")

Importing this package never imports torch; `make_torchrl_env` loads the TorchRL face on first use.
"""

from __future__ import annotations

from typing import Any

from cuma_env.answers import canonical_key, cluster_answers, extract_answer, is_equivalent, normalize_answer
from cuma_env.arithmetic import ArithmeticSource
from cuma_env.catalog import TASKS, make_source
from cuma_env.datasets import DATA_DIR_ENV, DATASETS, DataFileNotFoundError, load_problems, load_source
from cuma_env.episode import EpisodeConfig, score_group, vote_metrics
from cuma_env.gym_env import CuMaEnv
from cuma_env.problems import LEVELS, PoolSource, Problem, ProblemSource, ProblemStream
from cuma_env.prompting import format_prompt
from cuma_env.registration import register_all
from cuma_env.rewards import REWARDS, Group, GroupOutcome, GroupReward, make_reward
from cuma_env.spaces import Completions, MathText
from cuma_env.tasks import Dataset, Task, get_task, register
from cuma_env.voting import Vote, majority_vote

__version__ = "0.1.0"

register_all()


def make_torchrl_env(env_id: str, **kwargs: Any):
    """The same episode as a TorchRL env (batch = the group). Imports torch/torchrl on first call."""
    from cuma_env.torchrl.env import make_torchrl_env as _make

    return _make(env_id, **kwargs)


__all__ = [
    "ArithmeticSource", "Completions", "CuMaEnv", "DATASETS", "DATA_DIR_ENV", "DataFileNotFoundError",
    "EpisodeConfig", "Group", "GroupOutcome", "GroupReward", "LEVELS", "MathText", "PoolSource", "Problem",
    "ProblemSource", "ProblemStream", "REWARDS", "TASKS", "Vote", "canonical_key",
    "cluster_answers", "extract_answer", "format_prompt", "is_equivalent", "load_problems", "load_source",
    "majority_vote", "make_reward", "make_source", "make_torchrl_env", "normalize_answer", "score_group",
    "vote_metrics",
    "Dataset", "Task", "get_task", "register",  # tasks of your own: cuma_env.tasks, docs/extending.md
]
