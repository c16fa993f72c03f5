"""Schedules by name, for YAML configs and the CLI: `make_schedule("agreement_gated", window=64)`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from curricula.schedules.agreement_gated import AgreementGated
from curricula.schedules.base import Schedule
from curricula.schedules.learning_progress import LearningProgress
from curricula.schedules.sequential import Sequential
from curricula.schedules.simple import Fixed, Uniform

SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (Sequential, AgreementGated, LearningProgress, Uniform, Fixed)
}
DEFAULT_SCHEDULE = "sequential"  # the paper's D1 -> D5


def make_schedule(name: str | Schedule | Mapping[str, Any] = DEFAULT_SCHEDULE, **kwargs: Any) -> Schedule:
    """A schedule by name (`sequential`, `agreement_gated`, `learning_progress`, `uniform`, `fixed`) and kwargs.

    Also accepts a mapping `{"name": ..., **kwargs}` (one YAML block) or an existing `Schedule` (returned as is).
    Unknown names and unknown kwargs are one clear error each.
    """
    if isinstance(name, Schedule):
        if kwargs:
            raise TypeError("make_schedule: kwargs given together with a Schedule instance")
        return name
    if isinstance(name, Mapping):
        spec = dict(name)
        if "name" not in spec:
            raise ValueError(f"a schedule mapping needs a 'name' key, got keys {sorted(spec)}")
        return make_schedule(spec.pop("name"), **{**spec, **kwargs})
    key = str(name).strip().lower().replace("-", "_")
    if key not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    cls = SCHEDULES[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"schedule {key!r}: {exc}") from None


def schedule_from_state(state: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule from its `state_dict()` alone (name + config + state)."""
    schedule = make_schedule(state["name"], **state.get("config", {}))
    schedule.load_state_dict(state)
    return schedule
