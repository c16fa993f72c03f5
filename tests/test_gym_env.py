"""The Gymnasium face: real gym.make, env_checker, vector envs, errors."""

import inspect
import re
import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import cuma_env
from cuma_env import Completions, Problem


def test_make_arith_episode_round_trip():
    env = gym.make("CuMa-Arith-v0", group_size=4)
    obs, info = env.reset(seed=0)
    assert "\\boxed{}" in obs and set(info) >= {"level", "problem_id"} and "answer" not in info
    answer = env.unwrapped.problem.answer
    obs2, reward, terminated, truncated, info = env.step([f"\\boxed{{{answer}}}"] * 3 + ["\\boxed{-999}"])
    assert terminated and not truncated and obs2 == obs
    assert reward == pytest.approx(0.75) and info["rewards"] == [1, 1, 1, 0]
    assert info["majority"] == answer and info["majority_correct"] and not info["masked"]
    assert info["level"] == env.unwrapped.problem.level


def test_empty_votes_option_reaches_the_episode():
    env = gym.make("CuMa-Arith-v0", group_size=4, reward="majority", empty_votes=True)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(["I am not sure", "", "no idea", "\\boxed{7}"])
    assert info["majority"] is None and info["rewards"] == [1, 1, 1, 0] and reward == pytest.approx(0.75)
    default = gym.make("CuMa-Arith-v0", group_size=4, reward="majority")
    default.reset(seed=0)
    assert default.step(["I am not sure", "", "no idea", "\\boxed{7}"])[4]["rewards"] == [0, 0, 0, 1]


def test_reset_is_seeded_and_options_choose_the_problem():
    env = gym.make("CuMa-Arith-v0")
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]
    _, info = env.reset(options={"level": 4})
    assert info["level"] == 4
    p = Problem(id="mine", prompt="What is 1 + 1?", level=1, source="user", answer="2")
    obs, info = env.reset(options={"problem": p})
    assert obs.startswith("What is 1 + 1?") and info["problem_id"] == "mine"


@pytest.mark.parametrize("env_id", ["CuMa-Arith-v0", "CuMa-Math-v0", "CuMa-GSM8K-v0"])
def test_env_checker_passes(env_id, data_dir):
    env = gym.make(env_id, data_dir=data_dir, group_size=2).unwrapped
    check_env(env, skip_render_check=True)


def test_math_env_levels_and_latex_observations(data_dir):
    env = gym.make("CuMa-Math-v0", levels=[1, 2], data_dir=data_dir)
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        assert info["level"] in (1, 2) and env.observation_space.contains(obs)
    latex = ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}"] + ["\\boxed{\\left(3, \\pi\\right)}"] * 6
    assert env.action_space.contains(tuple(latex))
    assert env.step(latex)[4]["majority"] == "\\left(3, \\pi\\right)"


def test_bad_actions_give_clear_errors():
    env = gym.make("CuMa-Arith-v0", group_size=3)
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step(["1", "2", "3"])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="exactly group_size=3"):
        env.step(["1", "2"])
    with pytest.raises(TypeError, match="single str"):
        env.step("\\boxed{1}")
    with pytest.raises(TypeError, match="must be a str"):
        env.step(["1", 2, None])
    with pytest.raises(ValueError, match="unknown reward"):
        gym.make("CuMa-Arith-v0", reward="nope")


def test_self_certainty_through_completions_object():
    env = gym.make("CuMa-Arith-v0", group_size=2, reward="self_certainty")
    env.reset(seed=0)
    _, reward, *_ , info = env.step(Completions(["\\boxed{1}", "\\boxed{2}"], token_stats=[1.0, 3.0]))
    assert reward == pytest.approx(2.0) and info["rewards"] == [1.0, 3.0]


def test_sync_vector_env():
    envs = gym.make_vec("CuMa-Arith-v0", num_envs=3, vectorization_mode="sync", group_size=2)
    obs, infos = envs.reset(seed=0)
    assert len(obs) == 3 and all(isinstance(o, str) for o in obs)
    groups = [("\\boxed{1}", "\\boxed{1}")] * 3  # one group per sub-env
    actions = tuple(zip(*groups))  # Gymnasium batches a Tuple space field-wise: G entries of 3 strings
    assert envs.action_space.contains(actions)
    obs, rewards, terminated, truncated, infos = envs.step(actions)
    assert rewards.shape == (3,) and terminated.all() and list(rewards) == [1.0, 1.0, 1.0]
    envs.close()


def test_missing_data_error_names_the_variable(tmp_path):
    with pytest.raises(cuma_env.DataFileNotFoundError, match="CUMA_DATA_DIR"):
        gym.make("CuMa-Math-v0", data_dir=tmp_path)


def test_module_prefix_make_in_a_fresh_interpreter(data_dir):
    code = ("import gymnasium as gym, sys; e = gym.make('cuma_env:CuMa-Arith-v0'); print(e.reset(seed=1)[0]); "
            "m = gym.make('cuma_env:CuMa-Math-v0', data_dir=sys.argv[1]); print(m.reset(seed=1)[1]['level']); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(data_dir)], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert "\\boxed{}" in lines[0] and lines[1] in "12345" and lines[-1] == "False"


def test_register_envs_idiom():
    gym.register_envs(cuma_env)
    assert {"CuMa-Math-v0", "CuMa-GSM8K-v0", "CuMa-Arith-v0"} <= set(gym.registry)


def docstring_sections() -> dict[str, str]:
    parts = re.split(r"^\s*## (.+)$", cuma_env.CuMaEnv.__doc__, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_docstring_arguments_table_names_every_keyword():
    """The spec's Arguments table lists exactly the constructor's keywords, with their real defaults."""
    row = re.compile(r"^\s*\| `(\w+)` \| [^|]+ \| ([^|]+) \|", re.M)
    rows = dict(row.findall(docstring_sections()["Arguments"]))
    params = dict(inspect.signature(cuma_env.CuMaEnv).parameters)
    assert set(rows) == set(params)
    for name, param in params.items():
        if param.default is not None and name != "task":  # None defaults are described in words
            assert rows[name].strip() == f"`{param.default!r}`".replace("'", '"'), name


def test_docstring_names_every_reward_and_info_key():
    sections = docstring_sections()
    assert all(f"`{name}`" in sections["Rewards"] for name in cuma_env.REWARDS)
    env = gym.make("CuMa-Arith-v0", group_size=2)
    _, reset_info = env.reset(seed=3)
    info = env.step(["\\boxed{1}", "\\boxed{1}"])[4]
    assert all(f"`{key}`" in sections["Starting State"] for key in reset_info)
    assert all(f"`{key}`" in sections["Info"] for key in info)
