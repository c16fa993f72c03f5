"""Difficulty curricula for label-free RL: level samplers, schedules and the wrappers that apply them.

    from curricula import CurriculumWrapper, make_schedule
    env = CurriculumWrapper(gym.make("CuMa-Arith-v0"), make_schedule("agreement_gated"))

No schedule reads a label: each hears only the label-free `EpisodeStats` of finished groups (agreement,
mask, parse rate, majority answer). Importing this package never imports torch.
"""

from curricula.sampler import LevelSampler
from curricula.schedules import (
                                 DEFAULT_SCHEDULE,
                                 SCHEDULES,
                                 AgreementGated,
                                 Fixed,
                                 LearningProgress,
                                 Schedule,
                                 Sequential,
                                 Uniform,
                                 make_schedule,
                                 schedule_from_state,
)
from curricula.stats import EpisodeStats, stats_from_info
from curricula.stream import CurriculumStream
from curricula.wrappers import CurriculumWrapper, make_curriculum_torchrl_env

__all__ = [
    "AgreementGated", "CurriculumStream", "CurriculumWrapper", "DEFAULT_SCHEDULE", "EpisodeStats", "Fixed",
    "LearningProgress", "LevelSampler", "SCHEDULES", "Schedule", "Sequential", "Uniform", "make_curriculum_torchrl_env",
    "make_schedule", "schedule_from_state", "stats_from_info",
]
