"""CuMa's tasks as a verifiers (>= 0.4) environment whose group reward is our vote and mask.

verifiers 0.4 scores one trace per task with `@vf.reward` methods and leaves cross-sample judgement to an
`Env`'s `finalize(task, episode)`. CuMa's reward needs the whole group, so `CuMaVoteEnv` plays the
`agent` seat G times per episode (as verifiers' own best-of-n env does) and `finalize` votes on the G
final replies with `score_blocks` (the Gymnasium face's `score_group`). verifiers has no mask: every
member of a masked group gets reward 0 (no spread, so no group-relative advantage) and the metric
`masked` = 1. The verifiers plugin id is `cuma-gym` (the top-level shim package `cuma_gym`).

    env = load_environment("CuMa-Arith-v0", group_size=8, min_votes=2)   # a vf.Env
"""

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

try:
    import verifiers.v1 as vf
except ImportError as err:  # the module name shadows nothing: absolute imports reach the verifiers package
    raise ImportError('cuma_env.integrations.verifiers needs verifiers >= 0.4 (Python >= 3.11): '
                      'pip install "cuma-gym[verifiers]"') from err
from pydantic import Field

from cuma_env.catalog import get_task, make_source
from cuma_env.episode import EpisodeConfig
from cuma_env.integrations._groups import score_blocks
from cuma_env.problems import Problem, ProblemStream
from cuma_env.prompting import format_prompt
from cuma_env.voting import DEFAULT_MIN_VOTES

PLUGIN_ID = "cuma-gym"
TASKSET_KEYS = ("levels", "seed", "template", "data_dir")


class CuMaTaskData(vf.TaskData):
    """One catalog problem on the verifiers wire. `answer` is for diagnostics only (metric `correct`)."""

    env_id: str = ""
    problem_id: str = ""
    problem: str = ""  # the raw problem text; `prompt` is it rendered through the task's template
    level: int | None = None
    source: str = ""
    answer: str | None = None


class CuMaTask(vf.Task[CuMaTaskData, vf.State, vf.TaskConfig]):
    """No per-trace reward: the vote needs the whole group, so it runs in `CuMaVoteEnv.finalize`."""

    def problem(self) -> Problem:
        d = self.data
        return Problem(id=d.problem_id, prompt=d.problem, level=d.level, source=d.source, answer=d.answer)


class CuMaTasksetConfig(vf.TasksetConfig):
    env_id: str = "CuMa-Arith-v0"
    split: str = "train"
    levels: list[int] | None = None
    seed: int = 0
    template: str | None = None  # None: the task's own template (as in the Gymnasium face)
    data_dir: str | None = None


class CuMaTaskset(vf.Taskset[CuMaTask, CuMaTasksetConfig]):
    """The catalog's problems level by level (or, with a `ProblemStream`, the stream's choices, forever)."""

    def __init__(self, config: CuMaTasksetConfig) -> None:
        super().__init__(config)
        self.source = make_source(config.env_id, config.split, levels=config.levels, data_dir=config.data_dir,
                                  seed=config.seed)
        self.template = config.template or get_task(config.env_id).template
        self.stream: ProblemStream | None = None
        self.INFINITE = any(self.source.size(lv) is None for lv in self.source.levels)

    def use_stream(self, stream: ProblemStream) -> None:
        """Let a curriculum choose the problems; the env's `finalize` reports each group to it."""
        if not isinstance(stream, ProblemStream):
            raise TypeError(f"problem_stream must offer next_problem() and observe(info), got {type(stream).__name__}")
        self.stream = stream
        self.INFINITE = True

    def load(self) -> Iterator[CuMaTask]:
        if self.stream is not None:
            while True:
                yield self.task(self.stream.next_problem())
        for level in self.source.levels:
            index = 0
            while self.source.size(level) is None or index < self.source.size(level):
                yield self.task(self.source.get(level, index))
                index += 1

    def task(self, problem: Problem) -> CuMaTask:
        data = CuMaTaskData(id=problem.id, prompt=format_prompt(problem, self.template), env_id=self.config.env_id,
                            problem_id=problem.id, problem=problem.prompt, level=problem.level,
                            source=problem.source, answer=problem.answer)
        return CuMaTask(data, self.config.task)


class CuMaVoteEnvConfig(vf.EnvConfig):
    # the plain chat loop, run locally: a single-turn math answer needs no tools and no sandbox
    agent: vf.AgentConfig = vf.AgentConfig(harness={"id": "null"}, runtime=vf.SubprocessConfig())
    group_size: int = Field(8, ge=1)
    reward: str = "masked_majority"
    min_votes: int | float = DEFAULT_MIN_VOTES
    last_number_fallback: bool = True
    empty_votes: bool = False


class CuMaVoteEnv(vf.Env[CuMaVoteEnvConfig]):
    """G attempts of the `agent` seat per episode; `finalize` votes and records one reward per trace."""

    def __init__(self, config: CuMaVoteEnvConfig) -> None:
        super().__init__(config)
        self.episode_config = EpisodeConfig(group_size=config.group_size, min_votes=config.min_votes,
                                            reward=config.reward, last_number_fallback=config.last_number_fallback,
                                            empty_votes=config.empty_votes)  # fails fast on bad values

    async def run(self, task: vf.Task, agents: vf.Agents) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(self.config.group_size):
                group.create_task(agents.agent.run(task))

    async def finalize(self, task: vf.Task, episode: vf.Episode) -> None:
        traces = list(episode.traces)
        if len(traces) != self.config.group_size:  # verifiers: a raise fails the episode, never record a guess
            raise ValueError(f"the vote needs the group's {self.config.group_size} traces, got {len(traces)}")
        scored = score_blocks([t.last_reply for t in traces], self.config.group_size, self.episode_config,
                              [task.problem()], stream=getattr(self.taskset, "stream", None))[0]
        record_group(traces, scored.info)


def record_group(traces: list[vf.Trace], info: Mapping[str, Any]) -> None:
    """One reward per trace under the reward's name (0 for a masked group) and the vote's metrics."""
    masked = bool(info["masked"])
    for i, trace in enumerate(traces):
        trace.record_reward(info["reward_name"], 0.0 if masked else info["rewards"][i])
        trace.record_metrics({"masked": float(masked), "agreement": info["agreement"],
                              "parse_rate": info["parse_rate"]})
        if "correct" in info:  # diagnostics from the hidden answer: metrics, never part of the reward
            trace.record_metrics({"correct": float(info["correct"][i]),
                                  "majority_correct": float(info["majority_correct"])})
        trace.info["cuma"] = {"answer": info["answers"][i], "majority": info["majority"],
                              "majority_count": info["majority_count"], "level": info["level"]}


def load_environment(env_id: str = "CuMa-Arith-v0", split: str = "train", reward: str = "masked_majority",
                     min_votes: int | float = DEFAULT_MIN_VOTES, group_size: int = 8, *,
                     problem_stream: ProblemStream | None = None,
                     **env_kwargs: Any) -> CuMaVoteEnv:
    """The verifiers env for a CuMa task id. `levels`, `seed`, `template`, `data_dir` pick the problems;
    other keywords (`last_number_fallback`, `empty_votes`, `agent`, `timeout`, ...) go to the env config.
    `problem_stream` (e.g. `curricula.CurriculumStream`) chooses the problems and hears each group's info."""
    taskset = {k: env_kwargs.pop(k) for k in TASKSET_KEYS if k in env_kwargs}
    config = CuMaVoteEnvConfig(taskset=CuMaTasksetConfig(id=PLUGIN_ID, env_id=env_id, split=split, **taskset),
                               reward=reward, min_votes=min_votes, group_size=group_size, **env_kwargs)
    env = CuMaVoteEnv(config)
    if problem_stream is not None:
        env.taskset.use_stream(problem_stream)
    return env


__all__ = ["CuMaTask", "CuMaTaskData", "CuMaTaskset", "CuMaTasksetConfig", "CuMaVoteEnv", "CuMaVoteEnvConfig",
           "PLUGIN_ID", "load_environment", "record_group"]
