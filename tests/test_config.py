"""Configs: presets, YAML files, key=value overrides, and one-line errors for anything invalid."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agents.config import (
    DEFAULT_PRESET,
    Config,
    ConfigError,
    diff_keys,
    from_dict,
    load_config,
    preset_names,
    read_yaml,
    save_config,
)

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"tiny-cuma-gated", "tiny-cuma", "tiny-ttrl", "tiny-cuma-nomask", "tiny-cuma-nocurriculum",
           "tiny-intuitor", "tiny-oracle", "qwen2.5-0.5b-cuma"}


def test_every_issue_preset_ships_and_validates():
    assert PRESETS <= set(preset_names())
    for name in preset_names():
        config = load_config(preset=name)
        assert config.name == name
        assert config.rollout.group_size == 8 and config.rollout.temperature == 0.6
        if name.startswith("tiny"):
            assert config.model.path == "tiny" and config.train.lr <= 3e-5  # docs/label-free-tiny-world.md


def test_default_preset_is_the_gated_curriculum_with_a_relative_mask():
    config = load_config()
    assert DEFAULT_PRESET == config.name == "tiny-cuma-gated"
    assert config.curriculum.schedule == "agreement_gated" and config.curriculum.probe
    assert config.env.min_votes == 0.75 and config.env.reward == "masked_majority"
    assert config.rollout.prompts_per_step == 16


def test_presets_differ_where_the_baselines_differ():
    paper = load_config(preset="tiny-cuma")
    assert (paper.curriculum.schedule, paper.env.min_votes, paper.env.reward) == ("sequential", 2, "masked_majority")
    assert load_config(preset="tiny-ttrl").env.reward == "majority"
    assert load_config(preset="tiny-ttrl").curriculum.schedule == "uniform"
    assert load_config(preset="tiny-cuma-nomask").curriculum.schedule == "sequential"
    assert load_config(preset="tiny-cuma-nocurriculum").curriculum.schedule == "uniform"
    assert load_config(preset="tiny-intuitor").env.reward == "self_certainty"
    assert load_config(preset="tiny-oracle").env.reward == "ground_truth"


def test_qwen_preset_has_the_papers_hyper_parameters():
    c = load_config(preset="qwen2.5-0.5b-cuma")
    assert c.model.path == "Qwen/Qwen2.5-0.5B" and c.model.backend == "vllm"
    assert c.train.lr == 3e-6 and c.train.schedule == "cosine"
    assert (c.rollout.group_size, c.rollout.temperature, c.rollout.max_new_tokens) == (8, 0.6, 3072)
    assert c.env.id == "CuMa-Math-v0" and c.env.levels == [1, 2, 3, 4, 5]
    assert c.curriculum.schedule == "sequential"


def test_overrides_dotted_leaf_and_yaml_values():
    c = load_config(overrides=["train.lr=1e-5", "steps=7", "env.levels=[1, 2]", "curriculum.options.window=16",
                               "min_votes=0.5", "eval.max_new_tokens=null"])
    assert c.train.lr == 1e-5 and isinstance(c.train.lr, float)  # YAML reads 1e-5 as a string; coerced
    assert c.train.steps == 7 and c.env.levels == [1, 2] and c.curriculum.options["window"] == 16
    assert c.env.min_votes == 0.5 and c.eval.max_new_tokens is None
    assert load_config(overrides=["env.min_votes=6"]).env.min_votes == 6  # an int stays a count
    # a text key keeps text that YAML would read as a mapping or a list
    assert load_config(overrides=["env.prompt_template=Q: {problem}"]).env.prompt_template == "Q: {problem}"
    assert load_config(overrides=["prompt_template=[{problem}]"]).env.prompt_template == "[{problem}]"


@pytest.mark.parametrize("override, fragment", [
    ("train.lrr=1e-5", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    ("trian.lr=1e-5", "unknown key"),
    ("lr=fast", "train.lr: expected a number, got 'fast'"),
    ("train.lr=2", "train.lr: must be in (0, 1)"),
    ("temperature=1.0", "ambiguous"),
    ("rollout.group_size=1", "rollout.group_size: must be >= 2"),
    ("env.reward=vibes", "env.reward: must be one of"),
    ("env.levels=[0, 9]", "env.levels"),
    ("env.min_votes=1.5", "env.min_votes"),
    ("curriculum.options.windw=3", "curriculum: schedule 'agreement_gated'"),
    ("curriculum.schedule=zigzag", "unknown schedule"),
    ("train.masked_groups=keep", "train.masked_groups: must be one of drop, zero_advantage"),
    ("output.progress=maybe", "output.progress: expected true or false"),
    ("env.empty_votes=1", "env.empty_votes: expected true or false"),
    ("steps", "must look like key=value"),
    ("path=/tmp", "key 'path' is ambiguous: write one of model.path, env.pool.path"),
    ("env.source_seed=-3", "env.source_seed: must be >= 0"),
    ("env.levels={a: 1}", "env.levels"),  # a non-text key still reads YAML and reports the type
])
def test_bad_keys_and_values_are_one_clear_line(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_yaml_file_with_a_preset_base_and_unknown_keys(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("preset: tiny-ttrl\ntrain:\n  steps: 5\n")
    c = load_config(path=good)
    assert c.env.reward == "majority" and c.train.steps == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stpes: 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.stpes' \(did you mean 'train.steps'\?\)"):
        load_config(path=bad)
    with pytest.raises(ConfigError, match="unknown preset 'tiny-cuma-gatd'.*did you mean 'tiny-cuma-gated'"):
        load_config(preset="tiny-cuma-gatd")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path=tmp_path / "list.yaml")


def test_another_schedule_drops_the_presets_options_unless_it_brings_its_own(tmp_path):
    """A preset's `curriculum.options` are its schedule's kwargs: changing the schedule (override or a file on a
    preset) without setting options drops them, with one note; options given with it, or the same schedule, keep
    the usual merge."""
    gated = load_config().curriculum.options
    notes: list[str] = []
    c = load_config(overrides=["curriculum.schedule=uniform"], notes=notes)
    assert (c.curriculum.schedule, c.curriculum.options) == ("uniform", {})
    assert notes == ["curriculum.schedule=uniform replaces agreement_gated: agreement_gated's curriculum.options "
                     "(window, min_steps, agreement_threshold, ...) are dropped; set curriculum.options to give "
                     "uniform's"]
    assert load_config(overrides=["curriculum.schedule=fixed", "curriculum.options.level=2"]).curriculum.options == \
        {"level": 2}  # the option keys given with it are kept, the preset's others dropped
    assert load_config(overrides=["curriculum.options={level: 3}", "curriculum.schedule=fixed"]).curriculum.options \
        == {"level": 3}  # options as a whole, in either order
    assert load_config(overrides=["curriculum={schedule: fixed}"]).curriculum.options == {}
    notes = []
    same = load_config(overrides=["curriculum.schedule=Agreement-Gated", "curriculum.options.window=8"], notes=notes)
    assert same.curriculum.options == {**gated, "window": 8} and notes == []  # the same schedule keeps them
    assert load_config(preset="tiny-cuma", overrides=["curriculum.schedule=sequential"]).curriculum.options == \
        {"steps_per_level": 384}
    with pytest.raises(ConfigError, match="curriculum: schedule 'fixed': .*unexpected keyword argument 'window'"):
        load_config(overrides=["curriculum.schedule=fixed", "curriculum.options.window=4"])
    mine = tmp_path / "mine.yaml"  # a file on a preset: the same rule
    mine.write_text("preset: tiny-cuma-gated\ncurriculum:\n  schedule: fixed\n")
    notes = []
    assert load_config(path=mine, notes=notes).curriculum.options == {} and notes[0].startswith("mine.yaml: ")
    mine.write_text("preset: tiny-cuma-gated\ncurriculum:\n  schedule: fixed\n  options: {level: 2}\n")
    assert load_config(path=mine).curriculum.options == {"level": 2}


def test_presets_that_change_the_schedule_still_bring_their_own_options():
    """tiny-ttrl & co. change the inherited schedule and set `options` themselves: nothing to drop, no note."""
    notes: list[str] = []
    for name in preset_names():
        load_config(preset=name, notes=notes)
    assert notes == []
    assert load_config(preset="tiny-ttrl").curriculum.options == {}
    assert load_config(preset="tiny-cuma").curriculum.options == {"steps_per_level": 384}


def test_round_trip_through_the_run_directory_file(tmp_path):
    config = load_config(preset="tiny-cuma", overrides=["seed=3", "lr=2e-5"])
    save_config(config, tmp_path / "config.yaml")
    again = from_dict(read_yaml(tmp_path / "config.yaml"))
    assert again == config and isinstance(again, Config)
    assert diff_keys(config, config.replace(["train.steps=9", "seed=4"])) == ["seed", "train.steps"]
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["lr"] == 2e-5


def test_cli_fails_fast_with_one_line_on_a_bad_key():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "agents.commands.train", "--preset", "tiny-cuma", "train.lrr=1e-5"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["cuma train: error: unknown key 'train.lrr' (did you mean 'train.lr'?)"]
    assert time.perf_counter() - start < 20  # no model is loaded before the config is valid


def test_each_section_checks_its_own_keys_with_the_loaders_line():
    from agents import config_sections as sections

    CurriculumConfig, EnvConfig, EvalConfig = sections.CurriculumConfig, sections.EnvConfig, sections.EvalConfig
    ModelConfig, OutputConfig, PoolConfig = sections.ModelConfig, sections.OutputConfig, sections.PoolConfig
    RolloutConfig, TrainConfig = sections.RolloutConfig, sections.TrainConfig
    for section in (ModelConfig, EnvConfig, PoolConfig, CurriculumConfig, RolloutConfig, TrainConfig, EvalConfig,
                    OutputConfig, Config):
        section().validate()  # the defaults are valid
    cases = [(TrainConfig(lr=2.0), "train.lr=2"), (RolloutConfig(group_size=1), "rollout.group_size=1"),
             (EnvConfig(min_votes=1.5), "env.min_votes=1.5"), (EnvConfig(levels=[9]), "env.levels=[9]"),
             (EnvConfig(pool=PoolConfig(size=3)), "env.pool.size=3"), (EvalConfig(samples=-1), "eval.samples=-1"),
             (CurriculumConfig(options={"windw": 3}), "curriculum.options.windw=3"),
             (ModelConfig(device="gpu"), "model.device=gpu"), (OutputConfig(keep_checkpoints=0), "keep_checkpoints=0")]
    for section, override in cases:
        with pytest.raises(ConfigError) as direct:
            section.validate()
        with pytest.raises(ConfigError) as loaded:
            load_config(overrides=[override])
        assert str(direct.value) == str(loaded.value) and "\n" not in str(direct.value)
    # the one check that spans sections: a count threshold above the group would mask every group
    EnvConfig(min_votes=9).validate()
    with pytest.raises(ConfigError, match="env.min_votes 9 is more than rollout.group_size 8"):
        load_config(overrides=["env.min_votes=9", "rollout.group_size=8"])
