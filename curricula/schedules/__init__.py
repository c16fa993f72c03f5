"""Difficulty schedules: which level (or mixture of levels) to draw the next prompt from."""

from curricula.schedules.agreement_gated import AgreementGated
from curricula.schedules.base import Schedule
from curricula.schedules.learning_progress import LearningProgress
from curricula.schedules.registry import DEFAULT_SCHEDULE, SCHEDULES, make_schedule, schedule_from_state
from curricula.schedules.sequential import Sequential
from curricula.schedules.simple import Fixed, Uniform

__all__ = ["AgreementGated", "DEFAULT_SCHEDULE", "Fixed", "LearningProgress", "SCHEDULES", "Schedule",
           "Sequential", "Uniform", "make_schedule", "schedule_from_state"]
