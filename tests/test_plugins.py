"""Schedules and rewards from the user's own files: `module:Attr` paths and installed entry points.

Real modules written to a tmp folder on sys.path, a real `*.dist-info` folder that `importlib.metadata`
reads for the entry point tests, and a real `cuma train` subprocess (slow). No mocks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest
from cli_helpers import assert_error, cuma

from cuma_env import ArithmeticSource
from cuma_env.plugins import PluginError, load_object, plugin_names
from cuma_env.rewards import make_reward, reward_uses_labels
from curricula import CurriculumStream, CurriculumWrapper, make_schedule, schedule_from_state, stats_from_info

REPO = Path(__file__).resolve().parents[1]
CUMA = str(Path(sys.executable).with_name("cuma"))  # the console script: it puts no folder of its own on sys.path
AGREE = ["so \\boxed{7}", "\\boxed{7}", "\\boxed{7.0}", "\\boxed{8}"]  # 3 of 4 agree on 7

SCHEDULE_MODULE = '''
"""D1 for the first `switch_after` scored groups, then D2."""
from curricula.schedules.base import Schedule


class FirstTwo(Schedule):
    name = "first_two"

    def __init__(self, levels=None, switch_after=1):
        super().__init__(levels)
        self.switch_after = int(switch_after)
        self.seen = 0

    def level_weights(self):
        current = self.levels[0] if self.seen < self.switch_after else self.levels[1]
        return {lv: float(lv == current) for lv in self.levels}

    def _update(self, stats):
        self.seen += 1

    def config(self):
        return {"switch_after": self.switch_after, **self._levels_config()}

    def _state(self):
        return {"seen": self.seen}

    def _load(self, state):
        self.seen = int(state["seen"])


class NotASchedule:
    pass


def helper():
    return None
'''

REWARD_MODULE = '''
"""Rewards of every accepted shape."""
from cuma_env.rewards import GroupOutcome


def agreement_bonus(group):
    """1 for the majority cluster plus the group's agreement as a bonus; 0 for the rest."""
    winners = set(group.vote.clusters[0]) if group.vote.clusters else set()
    return [1.0 + group.vote.agreement if i in winners else 0.0 for i in range(group.size)]


agreement_bonus.uses_labels = False


class Shortest:
    """-len/100 per completion; masks a group whose completions all have the same length."""
    name = "shortest"
    uses_labels = False

    def __call__(self, group):
        lengths = [len(c) for c in group.completions]
        return GroupOutcome(rewards=tuple(-n / 100 for n in lengths), masked=len(set(lengths)) == 1)


shortest = Shortest()


def undeclared(group):
    return [0.0] * group.size


class NeedsArgs:
    def __init__(self, scale):
        self.scale = scale


THRESHOLD = 3
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """`my_sched.py` and `my_rewards.py` in a folder on sys.path (and forgotten again afterwards)."""
    (tmp_path / "my_sched.py").write_text(textwrap.dedent(SCHEDULE_MODULE))
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent(REWARD_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("my_sched", "my_rewards"):
        sys.modules.pop(name, None)


# --- schedules ------------------------------------------------------------------------------------
def test_make_schedule_from_a_path(plugin_dir):
    schedule = make_schedule("my_sched:FirstTwo", switch_after=2)
    assert type(schedule).__name__ == "FirstTwo" and type(schedule).__module__ == "my_sched"
    assert schedule.name == "my_sched:FirstTwo" and schedule.switch_after == 2  # the path is its name
    assert make_schedule({"name": "my_sched:FirstTwo", "switch_after": 3}).switch_after == 3  # a YAML block
    levels = []
    for _ in range(3):
        levels.append(schedule.level())
        schedule.update({"level": schedule.level(), "agreement": 1.0, "masked": False, "majority": "1",
                         "majority_count": 4, "group_size": 4, "parse_rate": 1.0})
    assert levels == [1, 1, 2]
    assert schedule.summary()["schedule"] == "my_sched:FirstTwo"


@pytest.mark.parametrize("path, message", [
    ("my_sched:Nope", "schedule 'my_sched:Nope': module 'my_sched' has no attribute 'Nope' "
                      "(expected a Schedule subclass)"),
    ("no_such_mod:FirstTwo", "schedule 'no_such_mod:FirstTwo': cannot import module 'no_such_mod'"),
    ("my_sched:helper", "schedule 'my_sched:helper': got a function; expected a Schedule subclass"),
    ("my_sched:NotASchedule", "schedule 'my_sched:NotASchedule': got class NotASchedule; expected a Schedule"),
])
def test_a_bad_schedule_path_is_one_line_naming_module_and_attribute(plugin_dir, path, message):
    with pytest.raises(PluginError) as info:
        make_schedule(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_module_that_fails_to_import_is_reported_not_raised(plugin_dir):
    (plugin_dir / "broken_sched.py").write_text("import no_such_dependency_here\n")
    with pytest.raises(PluginError, match="importing module 'broken_sched' failed: ModuleNotFoundError"):
        load_object("broken_sched:X", what="schedule")
    sys.modules.pop("broken_sched", None)


def test_unknown_kwargs_and_names_still_fail_clearly(plugin_dir):
    with pytest.raises(TypeError, match="schedule 'my_sched:FirstTwo': .*window"):
        make_schedule("my_sched:FirstTwo", window=4)
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'.*import path 'module:Class'"):
        make_schedule("zigzag")


def test_a_plugin_schedule_state_round_trips_through_a_checkpoint(plugin_dir, tmp_path):
    from agents.checkpoint import load_checkpoint, save_checkpoint

    env = gym.make("CuMa-Arith-v0", group_size=4)
    stream = CurriculumStream({"name": "my_sched:FirstTwo", "switch_after": 2}, ArithmeticSource(), seed=0)
    for _ in range(3):
        env.reset(options={"problem": stream.next_problem()})
        stream.observe(env.step(AGREE)[4])
    saved = save_checkpoint(tmp_path / "run", 3, {"stream": stream.state_dict()})
    state = load_checkpoint(saved)["stream"]
    assert state["schedule"]["name"] == "my_sched:FirstTwo"
    rebuilt = schedule_from_state(state["schedule"])  # from the state alone, as a resume does
    assert type(rebuilt).__module__ == "my_sched" and rebuilt.seen == 3 and rebuilt.switch_after == 2
    assert rebuilt.state_dict() == stream.schedule.state_dict()
    twin = CurriculumStream({"name": "my_sched:FirstTwo", "switch_after": 2}, ArithmeticSource(), seed=0)
    twin.load_state_dict(state)  # the agent's resume: the config's schedule, then the checkpoint's state
    assert [twin.next_problem().id for _ in range(4)] == [stream.next_problem().id for _ in range(4)]


# --- rewards --------------------------------------------------------------------------------------
def test_gym_make_with_a_reward_path(plugin_dir):
    env = gym.make("CuMa-Arith-v0", group_size=4, reward="my_rewards:agreement_bonus")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(AGREE)
    assert info["rewards"] == [1.75, 1.75, 1.75, 0.0] and reward == pytest.approx(1.3125) and terminated
    assert info["reward_name"] == "my_rewards:agreement_bonus" and not info["masked"]
    # declared label-free, so the curriculum statistics read its values (not the vote's 1/0)
    assert reward_uses_labels("my_rewards:agreement_bonus") is False
    assert stats_from_info(info).mean_abs_advantage == pytest.approx((3 * 0.4375 + 1.3125) / 4)


@pytest.mark.parametrize("path, completions, rewards, masked", [
    ("my_rewards:Shortest", ["\\boxed{7}", "\\boxed{7}", "\\boxed{17}", "x"], [-0.09, -0.09, -0.1, -0.01], False),
    ("my_rewards:shortest", ["\\boxed{7}"] * 4, [-0.09] * 4, True),  # an instance; it masks by itself
])
def test_a_reward_class_or_instance_at_a_path(plugin_dir, path, completions, rewards, masked):
    env = gym.make("CuMa-Arith-v0", group_size=4, reward=path)
    env.reset(seed=0)
    info = env.step(completions)[4]
    assert info["rewards"] == pytest.approx(rewards) and info["masked"] is masked and info["reward_name"] == path


def test_a_reward_that_does_not_declare_label_use_counts_as_using_labels(plugin_dir):
    assert make_reward("my_rewards:undeclared").uses_labels is True
    assert reward_uses_labels("my_rewards:undeclared") is True
    assert reward_uses_labels("no_such_reward_anywhere") is True


@pytest.mark.parametrize("path, message", [
    ("my_rewards:nope", "reward 'my_rewards:nope': module 'my_rewards' has no attribute 'nope' (expected a "
                        "GroupReward class or instance, or a function"),
    ("gone_rewards:bonus", "reward 'gone_rewards:bonus': cannot import module 'gone_rewards'"),
    ("my_rewards:THRESHOLD", "reward 'my_rewards:THRESHOLD': the object is of type int, not callable"),
    ("my_rewards:NeedsArgs", "reward 'my_rewards:NeedsArgs': class NeedsArgs cannot be built with no arguments"),
])
def test_a_bad_reward_path_is_one_line(plugin_dir, path, message):
    with pytest.raises(PluginError) as info:
        gym.make("CuMa-Arith-v0", group_size=4, reward=path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_reward_name_still_lists_the_choices():
    with pytest.raises(ValueError, match="unknown reward 'vibes'.*masked_majority.*'module:attr'"):
        make_reward("vibes")


def test_a_plugin_schedule_and_reward_drive_a_curriculum_wrapper(plugin_dir):
    env = CurriculumWrapper(gym.make("CuMa-Arith-v0", group_size=4, reward="my_rewards:agreement_bonus"),
                            make_schedule("my_sched:FirstTwo", switch_after=2), seed=0)
    levels = []
    for episode in range(4):
        levels.append(env.reset(seed=0 if episode == 0 else None)[1]["level"])  # a seeded reset restarts
        assert env.step(AGREE)[4]["rewards"] == [1.75, 1.75, 1.75, 0.0]
    assert levels == [1, 1, 2, 2]


# --- the agent's config and CLI -------------------------------------------------------------------
def test_config_accepts_paths_and_reports_bad_ones_as_one_line(plugin_dir):
    from agents.config import ConfigError, load_config

    config = load_config(overrides=["curriculum.schedule=my_sched:FirstTwo", "curriculum.options={switch_after: 4}",
                                    "env.reward=my_rewards:agreement_bonus"])
    assert (config.curriculum.schedule, config.env.reward) == ("my_sched:FirstTwo", "my_rewards:agreement_bonus")
    bad = [(["curriculum.schedule=my_sched:Nope"], "curriculum: schedule 'my_sched:Nope': module 'my_sched' has no "
                                                   "attribute 'Nope' (expected a Schedule subclass)"),
           (["curriculum.schedule=my_sched:FirstTwo", "curriculum.options.window=4"],  # gated options, given anew
            "curriculum: schedule 'my_sched:FirstTwo': "),
           (["env.reward=my_rewards:nope"], "env.reward: reward 'my_rewards:nope': module 'my_rewards' has no "
                                            "attribute 'nope'"),
           (["env.reward=vibes"], "env.reward: must be one of masked_majority")]
    for overrides, message in bad:
        with pytest.raises(ConfigError) as info:
            load_config(overrides=overrides)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_cuma_train_prints_a_bad_path_as_one_line(plugin_dir, capsys, tmp_path):
    result = cuma(capsys, "train", "--out", tmp_path / "run", "curriculum.schedule=my_sched:Nope")
    assert_error(result, "train", "module 'my_sched' has no attribute 'Nope' (expected a Schedule subclass)")
    result = cuma(capsys, "train", "--out", tmp_path / "run", "env.reward=nowhere_mod:bonus")
    assert_error(result, "train", "cannot import module 'nowhere_mod'")
    assert not (tmp_path / "run").exists()


# --- installed plugins: entry points --------------------------------------------------------------
@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A distribution as pip leaves it: modules plus a `*.dist-info` with `entry_points.txt`, on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cuma_ep_sched.py").write_text(textwrap.dedent(SCHEDULE_MODULE))
    (site / "cuma_ep_rewards.py").write_text(textwrap.dedent(REWARD_MODULE))
    info = site / "cuma_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cuma-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [cuma.schedules]
        first_two = cuma_ep_sched:FirstTwo
        not_a_schedule = cuma_ep_sched:helper

        [cuma.rewards]
        bonus = cuma_ep_rewards:agreement_bonus
        broken = cuma_ep_missing_module:thing
    """))
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in ("cuma_ep_sched", "cuma_ep_rewards"):
        sys.modules.pop(name, None)


def test_entry_point_names_work_like_built_in_names(installed_plugin):
    assert {"first_two", "not_a_schedule"} <= set(plugin_names("cuma.schedules"))
    schedule = make_schedule("first_two", switch_after=1)
    assert type(schedule).__module__ == "cuma_ep_sched" and schedule.name == "first_two"
    schedule.update({"level": 1, "agreement": 1.0, "masked": False, "majority": "1", "majority_count": 4,
                     "group_size": 4, "parse_rate": 1.0})
    rebuilt = schedule_from_state(schedule.state_dict())
    assert rebuilt.name == "first_two" and rebuilt.seen == 1 and rebuilt.level() == 2
    env = gym.make("CuMa-Arith-v0", group_size=4, reward="bonus")
    env.reset(seed=0)
    info = env.step(AGREE)[4]
    assert info["rewards"] == [1.75, 1.75, 1.75, 0.0] and info["reward_name"] == "bonus"
    assert reward_uses_labels("bonus") is False
    assert make_reward("masked_majority").name == "masked_majority"  # built-ins are untouched


def test_entry_point_errors_name_the_plugin(installed_plugin):
    with pytest.raises(PluginError, match="entry point 'broken' in group 'cuma.rewards' .*failed to load"):
        make_reward("broken")
    with pytest.raises(PluginError, match="schedule 'not_a_schedule': got a function; expected a Schedule"):
        make_schedule("not_a_schedule")
    with pytest.raises(ValueError, match="unknown schedule 'zigzag'.*installed plugins: first_two, not_a_schedule"):
        make_schedule("zigzag")


def test_entry_point_names_in_the_agent_config(installed_plugin):
    from agents.config import ConfigError, load_config

    config = load_config(overrides=["curriculum.schedule=first_two", "curriculum.options={}", "env.reward=bonus"])
    assert (config.curriculum.schedule, config.env.reward) == ("first_two", "bonus")
    with pytest.raises(ConfigError, match="env.reward: must be one of .*, bonus, broken, or an import path"):
        load_config(overrides=["env.reward=vibes"])
    with pytest.raises(ConfigError, match="env.reward: entry point 'broken'"):
        load_config(overrides=["env.reward=broken"])


# --- end to end -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_cuma_train_with_a_schedule_from_a_file_then_resume(tiny_base_dir, tmp_path):
    """`cuma train curriculum.schedule=my_sched:FirstTwo` with the worked example's folder
    (examples/my_curriculum) on PYTHONPATH trains, without clearing the preset's options by hand (they are
    dropped, with one note), and `--resume` rebuilds the plugin schedule from the checkpoint."""
    from agents.checkpoint import latest_checkpoint, load_checkpoint
    from agents.run_outputs import read_csv

    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"  # not the module's folder: PYTHONPATH finds it
    elsewhere.mkdir()
    small = [f"model.path={tiny_base_dir}", "rollout.group_size=4", "rollout.prompts_per_step=2",
             "rollout.max_new_tokens=16", "eval.every=0", "eval.n_per_level=1", "eval.samples=1",
             "output.progress=false", "output.tensorboard=false", "output.checkpoint_every=1"]
    example = REPO / "examples" / "my_curriculum"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(example), str(REPO)])}

    def train(*args: str) -> str:
        proc = subprocess.run([CUMA, "train", *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = train("--preset", "tiny-cuma-gated", "--out", str(run), "curriculum.schedule=my_sched:FirstTwo",
                "train.steps=2", *small)
    assert "cuma train: note: curriculum.schedule=my_sched:FirstTwo replaces agreement_gated" in out
    assert len(read_csv(run / "metrics.csv")) == 2
    schedule = load_checkpoint(latest_checkpoint(run))["stream"]
    assert "my_sched:FirstTwo" in repr(schedule)  # the stream's state names the path, for the resume
    assert "window': 16" in repr(schedule)  # FirstTwo's own defaults, not the preset's window=32
    train("--resume", str(run), "train.steps=3")
    assert len(read_csv(run / "metrics.csv")) == 3
