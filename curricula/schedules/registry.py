"""Schedules by name, for YAML configs and the CLI: `make_schedule("agreement_gated", window=64)`.

Your own schedule goes wherever a name does: a `module:Class` import path (`make_schedule("my_sched:FirstTwo")`,
`curriculum.schedule=my_sched:FirstTwo`) or the name an installed distribution registers in the entry point
group `cuma.schedules`. Either must give a `Schedule` subclass. Built-in names win over an entry point of the
same name. Such a schedule takes the name it was built from as its `name`, so its `state_dict()` records the
path (or entry point name) and `schedule_from_state` / `cuma train --resume` rebuild the same class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cuma_env.plugins import PluginError, load_plugin, plugin_names
from curricula.schedules.agreement_gated import AgreementGated
from curricula.schedules.base import Schedule
from curricula.schedules.learning_progress import LearningProgress
from curricula.schedules.sequential import Sequential
from curricula.schedules.simple import Fixed, Uniform

SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (Sequential, AgreementGated, LearningProgress, Uniform, Fixed)
}
DEFAULT_SCHEDULE = "sequential"  # the paper's D1 -> D5
SCHEDULE_GROUP = "cuma.schedules"  # the entry point group of installed schedule plugins
_EXPECTED = "a Schedule subclass"


def make_schedule(name: str | Schedule | Mapping[str, Any] = DEFAULT_SCHEDULE, **kwargs: Any) -> Schedule:
    """A schedule by name (`sequential`, `agreement_gated`, `learning_progress`, `uniform`, `fixed`) and kwargs.

    Also accepts a `module:Class` path or an installed plugin's name (see the module docstring), a mapping
    `{"name": ..., **kwargs}` (one YAML block) or an existing `Schedule` (returned as is). Unknown names, bad
    paths and unknown kwargs are one clear error each.
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
    plugin = None if key in SCHEDULES else str(name).strip()
    cls = SCHEDULES[key] if plugin is None else _plugin_class(plugin)
    try:
        schedule = cls(**kwargs)
    except TypeError as exc:
        raise TypeError(f"schedule {plugin or key!r}: {exc}") from None
    if plugin is not None:
        schedule.name = plugin  # recorded by state_dict(): the state rebuilds this class, not a built-in's
    return schedule


def _plugin_class(name: str) -> type[Schedule]:
    obj = load_plugin(name, SCHEDULE_GROUP, what="schedule", expected=_EXPECTED)
    if obj is None:
        installed = plugin_names(SCHEDULE_GROUP)
        plugins = f"; installed plugins: {', '.join(installed)}" if installed else ""
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}{plugins}, "
                         "or give an import path 'module:Class'")
    if not (isinstance(obj, type) and issubclass(obj, Schedule)):
        kind = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise PluginError(f"schedule {name!r}: got {kind}; expected {_EXPECTED} "
                          "(of curricula.schedules.base.Schedule)")
    return obj


def schedule_from_state(state: Mapping[str, Any]) -> Schedule:
    """Rebuild a schedule from its `state_dict()` alone (name + config + state)."""
    schedule = make_schedule(state["name"], **state.get("config", {}))
    schedule.load_state_dict(state)
    return schedule
