"""CurriculumWrapper / CurriculumStream: env_checker, schedule-driven draws, JSON resume, vector sharing, TorchRL."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import cuma_env
from cuma_env import ArithmeticSource, CuMaEnv
from curricula import AgreementGated, CurriculumStream, CurriculumWrapper, Sequential, make_schedule


def answers_for(level: int, i: int, size: int = 4) -> list[str]:
    """A confident group (all but one agree) whose answer differs from prompt to prompt."""
    return [f"\\boxed{{{1000 * level + i}}}"] * (size - 1) + ["\\boxed{-1}"]


def small_gate(**kw):
    return AgreementGated(window=4, min_steps=4, concentration_min=4, concentration_window=8, **kw)


def test_check_env_passes_on_the_wrapped_env():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), "agreement_gated"))
        check_env(CurriculumWrapper(gym.make("CuMa-Arith-v0", group_size=4), Sequential(steps_per_level=1)))
        check_env(CurriculumWrapper(gym.make("CuMa-Arith-v0", group_size=4), "learning_progress"))


def test_levels_follow_the_schedule_and_info_carries_the_curriculum():
    env = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), Sequential(steps_per_level=2), seed=1)
    levels = []
    for i in range(12):
        _, info = env.reset(seed=0 if i == 0 else None)
        assert info["curriculum"]["schedule"] == "sequential" and info["curriculum"]["drawn"] == i + 1
        levels.append(info["level"])
        _, _, terminated, _, info = env.step(answers_for(info["level"], i))
        assert terminated and info["curriculum"]["steps"] == i + 1
        assert "majority_correct" in info  # the env still reports diagnostics; the schedule never reads them
    assert levels == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]


def test_gate_promotes_through_the_wrapper_on_confident_diverse_groups():
    env = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), small_gate())
    seen = []
    for i in range(20):
        _, info = env.reset(seed=3 if i == 0 else None)
        seen.append(info["level"])
        env.step(answers_for(info["level"], i))
    assert seen == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4


def run_episodes(env, n, start=0, first_seed=None):
    ids = []
    for i in range(start, start + n):
        _, info = env.reset(seed=first_seed if (i == start and first_seed is not None) else None)
        ids.append(info["problem_id"])
        env.step(answers_for(info["level"], i))
    return ids


@pytest.mark.parametrize("spec", [{"name": "agreement_gated", "window": 4, "min_steps": 4, "replay": 0.3},
                                  {"name": "learning_progress", "min_visits": 2},
                                  {"name": "sequential", "steps_per_level": 3, "replay": 0.5}])
def test_restored_wrapper_draws_exactly_the_same_next_problems(spec):
    whole = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), make_schedule(spec))
    uninterrupted = run_episodes(whole, 30, first_seed=7)
    first = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), make_schedule(spec))
    head = run_episodes(first, 11, first_seed=7)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), make_schedule(spec), seed=123)
    resumed.load_state_dict(state)
    assert head + run_episodes(resumed, 19, start=11) == uninterrupted
    assert resumed.state_dict() == whole.state_dict()


def test_seeded_reset_restarts_the_curriculum():
    env = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), small_gate())
    a = run_episodes(env, 10, first_seed=5)
    assert env.schedule.level() > 1
    assert run_episodes(env, 10, first_seed=5) == a
    assert run_episodes(env, 10, first_seed=6) != a
    keep = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), small_gate(), seed_resets_curriculum=False)
    run_episodes(keep, 10, first_seed=5)
    env.reset(seed=1)
    keep.reset(seed=1)
    assert keep.schedule.steps == 10 and env.schedule.steps == 0


def test_one_schedule_drives_vector_sub_envs_consistently():
    schedule = small_gate()
    envs = gym.make_vec("CuMa-Arith-v0", num_envs=3, vectorization_mode="sync", group_size=4,
                        wrappers=[lambda e: CurriculumWrapper(e, schedule)])
    obs, infos = envs.reset(seed=0)
    ids, levels = [], []
    for step in range(8):
        ids += list(infos["problem_id"])
        levels.append(list(infos["level"]))
        per_env = [answers_for(lv, 3 * step + k) for k, lv in enumerate(infos["level"])]
        actions = tuple(zip(*per_env))  # the batched Tuple space: one entry per group member, each over envs
        _, _, _, _, infos = envs.step(actions)          # scores the group; the schedule hears all three
        _, infos = envs.reset()
    envs.close()
    assert schedule.steps == 24
    assert len(set(ids)) == len(ids)  # one shared sampler: no repeats across sub-envs
    assert all(len(set(lv)) == 1 for lv in levels)  # every sub-env draws the level the shared schedule says
    assert levels[0] == [1, 1, 1] and levels[-1][0] > 1


def test_options_and_errors():
    env = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", group_size=4), "uniform")
    _, info = env.reset(seed=0, options={"level": 3})
    assert info["level"] == 3
    problem = ArithmeticSource().get(2, 0)
    _, info = env.reset(options={"problem": problem})
    assert info["problem_id"] == problem.id
    stream = CurriculumStream("fixed", ArithmeticSource())
    with pytest.raises(ValueError, match="problem_stream"):
        CurriculumWrapper(CuMaEnv("CuMa-Arith-v0", problem_stream=stream), "uniform")
    with pytest.raises(ValueError, match="levels"):
        CurriculumStream(Sequential(levels=[1, 2]), ArithmeticSource(levels=(1,)))
    shared = small_gate()
    first = CurriculumWrapper(CuMaEnv("CuMa-Arith-v0"), shared, probe=lambda lv, ps: [])
    with pytest.raises(ValueError, match="different probe hook"):
        CurriculumWrapper(CuMaEnv("CuMa-Arith-v0"), shared, probe=lambda lv, ps: [])
    assert CurriculumWrapper(CuMaEnv("CuMa-Arith-v0"), shared).stream is first.stream


def test_stream_is_a_problem_stream_for_the_plain_env():
    stream = CurriculumStream(Sequential(steps_per_level=1), ArithmeticSource(), seed=0)
    assert isinstance(stream, cuma_env.ProblemStream)
    env = CuMaEnv("CuMa-Arith-v0", group_size=4, problem_stream=stream)
    levels = []
    for i in range(6):
        _, info = env.reset()
        levels.append(info["level"])
        env.step(answers_for(info["level"], i))
    assert levels == [1, 2, 3, 4, 5, 5] and stream.observed == 6


def test_curricula_imports_without_torch():
    code = "import sys, curricula, gymnasium; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torchrl_env_takes_the_stream_as_its_data_source():
    pytest.importorskip("torchrl")
    from curricula import make_curriculum_torchrl_env

    env, stream = make_curriculum_torchrl_env("CuMa-Arith-v0", Sequential(steps_per_level=1), seed=0,
                                              group_size=4, input_mode="history")
    levels = []
    for i in range(3):
        td = env.reset()
        levels.append(int(td["level"][0]))
        assert stream.last_problem.level == levels[-1]
        # what the env does once the group is scored (its GroupScorer / GroupVote): observe(info)
        stream.observe(cuma_env.score_group(stream.last_problem, answers_for(levels[-1], i), env.config))
    assert levels == [1, 2, 3] and stream.observed == 3


def test_restored_stream_with_probes_continues_identically():
    def probe(level, problems):  # deterministic: ready iff the first problem's operands sum to an even number
        ready = sum(problems[0].meta["operands"]) % 2 == 0
        return [{"agreement": 0.875 if ready else 0.25, "masked": False, "majority": p.id,
                 "majority_count": 7 if ready else 2, "group_size": 8} for p in problems]

    def make():
        return CurriculumStream(AgreementGated(window=4, min_steps=4, probe_interval=4), ArithmeticSource(), seed=2,
                                probe=probe)

    def run(stream, n, start=0):
        ids = []
        for i in range(start, start + n):
            problem = stream.next_problem()
            ids.append(problem.id)
            stream.observe(cuma_env.score_group(problem, answers_for(problem.level, i, 8), cuma_env.EpisodeConfig()))
        return ids

    whole = make()
    uninterrupted = run(whole, 60)
    first = make()
    head = run(first, 23)
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    assert head + run(resumed, 37, start=23) == uninterrupted
    assert whole.probes > 1 and resumed.state_dict() == whole.state_dict()
