"""Curriculum wrappers: make any CuMa environment draw its prompts from a schedule.

Gymnasium:

    env = CurriculumWrapper(gym.make("CuMa-Arith-v0"), make_schedule("agreement_gated"), seed=0)
    obs, info = env.reset(seed=0)          # info['level'], info['curriculum'] (the schedule's summary)
    obs, r, term, trunc, info = env.step(completions)    # the group is fed back to the schedule

Vector envs: give every sub-env's wrapper the *same* schedule object (or the same `CurriculumStream`); they
then share one stream, hence one curriculum and one sampler (no repeats across sub-envs within an epoch).
This holds for `SyncVectorEnv`; an `AsyncVectorEnv` copies the schedule into each worker process, so there
drive the curriculum from the main process (`reset(options={"problem": stream.next_problem()})`).

TorchRL: the TorchRL face takes the stream as its data source, `cuma_env.make_torchrl_env(env_id,
problem_stream=stream)`; `make_curriculum_torchrl_env` does both steps.

Seeding: a seeded `reset(seed=s)` restarts the curriculum from its initial state with seed `s` (Gymnasium's
contract: what follows a seeded reset depends only on the seed and the actions; `check_env` tests it). Only
the first wrapper of a shared stream (sub-env 0) restarts it. To resume a run, `load_state_dict` and then
call `reset()` without a seed, or pass `seed_resets_curriculum=False`.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from curricula.schedules import Schedule, make_schedule
from curricula.stream import CurriculumStream, ProbeHook

# id(schedule) -> its stream, alive while some wrapper holds the stream (which holds the schedule, so the id
# cannot be reused while the entry exists).
_SHARED_STREAMS: weakref.WeakValueDictionary[int, CurriculumStream] = weakref.WeakValueDictionary()


def shared_stream(schedule: Schedule, source: Any, *, seed: int = 0,
                  probe: ProbeHook | None = None) -> CurriculumStream:
    """The one stream a schedule object drives (created over `source` on first use)."""
    stream = _SHARED_STREAMS.get(id(schedule))
    if stream is None or stream.schedule is not schedule:
        stream = CurriculumStream(schedule, source, seed=seed, probe=probe)
        _SHARED_STREAMS[id(schedule)] = stream
        return stream
    theirs, ours = stream.sampler.source, source
    same = theirs is ours or (getattr(theirs, "name", None) == getattr(ours, "name", None)
                              and tuple(theirs.levels) == tuple(ours.levels)
                              and all(theirs.size(lv) == ours.size(lv) for lv in stream.sampler.levels))
    if not same:
        raise ValueError("this schedule already drives a stream over another problem source; "
                         "use one schedule object per source")
    if probe is not None and stream.probe is not None and probe is not stream.probe:
        raise ValueError("this schedule's shared stream already has a different probe hook")
    return stream


class CurriculumWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Draws each episode's prompt from a curriculum and feeds each scored group back to it.

    Args:
        env: a CuMa Gymnasium env (any wrapper stack over `cuma_env.CuMaEnv`) without a `problem_stream`.
        schedule: a `Schedule`, a schedule name or `{"name": ..., **kwargs}`, or a `CurriculumStream`.
        seed: the curriculum's seed until a seeded reset (default 0).
        probe: optional probe hook (see `AgreementGated`).
        seed_resets_curriculum: whether `reset(seed=...)` restarts the curriculum (default True).

    `reset(options={"problem": p})` bypasses the curriculum for one episode (the group is still observed);
    `reset(options={"level": k})` draws the next problem of level k from the curriculum's sampler.
    """

    def __init__(self, env: gym.Env, schedule: Schedule | CurriculumStream | str | Mapping[str, Any] = "sequential",
                 *, seed: int = 0, probe: ProbeHook | None = None, seed_resets_curriculum: bool = True):
        gym.Wrapper.__init__(self, env)
        base = env.unwrapped
        if getattr(base, "problem_stream", None) is not None:
            raise ValueError("the wrapped env already has a problem_stream; give the curriculum to one of them only")
        if isinstance(schedule, CurriculumStream):
            if probe is not None and probe is not schedule.probe:
                raise ValueError("pass the probe hook to the CurriculumStream, not to the wrapper")
            self.stream = schedule
        else:
            if not hasattr(base, "source"):
                raise TypeError(f"{type(base).__name__} has no problem `source`; wrap a cuma_env.CuMaEnv")
            if not isinstance(schedule, Schedule):
                schedule = make_schedule(schedule)
            self.stream = shared_stream(schedule, base.source, seed=seed, probe=probe)
        self.seed_resets_curriculum = bool(seed_resets_curriculum)
        self.owns_stream = self.stream.claim(self)
        # What `env.spec.make()` rebuilds: a fresh curriculum with the same schedule config (never this one).
        gym.utils.RecordConstructorArgs.__init__(
            self, schedule={"name": self.stream.schedule.name, **self.stream.schedule.config()},
            seed=self.stream.seed, seed_resets_curriculum=self.seed_resets_curriculum)

    @property
    def schedule(self) -> Schedule:
        return self.stream.schedule

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if seed is not None and self.seed_resets_curriculum and self.owns_stream:
            self.stream.restart(seed)
        if "problem" not in options:
            options["problem"] = self.stream.next_problem(level=options.pop("level", None))
        else:
            options.pop("level", None)
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["curriculum"] = self.stream.summary()
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.stream.observe(info)
        info = dict(info)
        info["curriculum"] = self.stream.summary()
        return obs, reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """The curriculum's JSON state (the stream's: schedule, sampler positions, generator state)."""
        return self.stream.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state)


def make_curriculum_torchrl_env(env_id: str, schedule: Schedule | str | Mapping[str, Any] = "sequential", *,
                                seed: int = 0, probe: ProbeHook | None = None, split: str = "train",
                                levels: Any = None, data_dir: Any = None, **env_kwargs: Any):
    """The TorchRL face of `env_id` with a curriculum as its data source; returns (env, stream).

    The stream is built over the same source the env would use (`cuma_env.make_source(env_id, split,
    levels, data_dir)`); the env calls `stream.next_problem()` at each reset and `stream.observe(info)` per
    scored group. Imports torch/torchrl (through `cuma_env.make_torchrl_env`).
    """
    import cuma_env

    stream = CurriculumStream.from_env(env_id, schedule, split=split, levels=levels, data_dir=data_dir,
                                       seed=seed, probe=probe)
    kwargs = dict(env_kwargs)
    if levels is not None:
        kwargs["levels"] = levels
    if data_dir is not None:
        kwargs["data_dir"] = data_dir
    if split != "train":
        kwargs["split"] = split
    env = cuma_env.make_torchrl_env(env_id, problem_stream=stream, **kwargs)
    return env, stream
