"""`env.pool`: which problems a run trains on (the train split, a MATH-skewed pool, a curated file)."""

from __future__ import annotations

import json

import pytest

from agents.config import ConfigError, from_dict, load_config, read_yaml
from agents.train_pool import SKEWED_POOL_SIZE, training_source
from cuma_env.catalog import make_source
from curricula.mixing import MATH_LEVEL_COUNTS, skewed_pool


def ids_by_level(source) -> dict:
    return {lv: [source.get(lv, i).id for i in range(source.size(lv))] for lv in source.levels}


def test_the_default_pool_is_the_train_split_as_before():
    config = load_config()
    assert config.env.pool.kind == "split" and config.to_dict()["env"]["pool"]["kind"] == "split"
    source = training_source(config.env)
    before = make_source(config.env.id, "train", seed=config.env.source_seed)
    assert type(source) is type(before) and source.levels == before.levels
    assert [source.get(lv, 7).id for lv in source.levels] == [before.get(lv, 7).id for lv in before.levels]
    narrowed = training_source(load_config(overrides=["env.levels=[2,3]", "env.source_seed=4"]).env)
    assert narrowed.levels == (2, 3) and narrowed.get(2, 0).id == make_source(
        "CuMa-Arith-v0", "train", levels=(2, 3), seed=4).get(2, 0).id


def test_skewed_pool_has_math_proportions_and_a_size():
    config = load_config(overrides=["env.pool.kind=skewed"])
    pool = training_source(config.env)
    sizes = [pool.size(lv) for lv in (1, 2, 3, 4, 5)]
    assert sum(sizes) == SKEWED_POOL_SIZE and sizes == [60, 134, 164, 174, 218]
    small = training_source(config.replace({"env.pool.size": 100, "env.levels": [3, 4, 5]}).env)
    whole = sum(MATH_LEVEL_COUNTS[lv] for lv in (3, 4, 5))
    assert small.levels == (3, 4, 5) and len(small) == 100
    assert all(abs(small.size(lv) - 100 * MATH_LEVEL_COUNTS[lv] / whole) < 1 for lv in (3, 4, 5))
    with pytest.raises(ConfigError, match="env.pool: .*only 63"):  # level 1 of the arith split holds 63
        training_source(config.replace(["env.pool.size=2000"]).env)


def test_the_nocurated_arm_trains_on_the_pool_the_patch_built_before():
    """The same problems, level by level, as reproduce's former `nocurated_pool(config)` + patched make_source."""
    from agents.experiments.reproduce import Budget, method_config

    for seed, levels in ((0, None), (3, [2, 3, 5])):
        config = method_config("cuma_nocurated", 0, Budget(steps=10))
        config = config.replace({"env.source_seed": seed, "env.levels": levels})
        split = make_source(config.env.id, "train", levels=tuple(levels) if levels else None, seed=seed)
        before = skewed_pool(split, {lv: MATH_LEVEL_COUNTS[lv] for lv in split.levels}, total=750, seed=seed,
                             name="arith-math-skewed")
        if levels is not None:
            before = before.filter_levels(levels)  # what the patched make_source handed the rollout
        now = training_source(config.env)
        assert now.name == before.name and ids_by_level(now) == ids_by_level(before)


def write_jsonl(path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def curated_records(levels) -> list[dict]:
    return [{"id": f"cur/{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i), "level": lv,
             "measured_level": 6 - lv} for i, lv in enumerate(levels)]


def test_file_pool_from_a_curated_jsonl_optionally_topped_up(tmp_path):
    path = write_jsonl(tmp_path / "curated.jsonl", curated_records([1, 1, 1, 2, 3]))
    config = load_config(overrides=["env.pool.kind=file", f"env.pool.path={path}"])
    pool = training_source(config.env)
    assert pool.levels == (1, 2, 3) and [pool.size(lv) for lv in pool.levels] == [3, 1, 1]
    assert pool.get(1, 0).id == "cur/0" and pool.get(1, 0).answer == "0"
    measured = training_source(config.replace(["env.pool.level_field=measured_level"]).env)
    assert measured.levels == (3, 4, 5) and measured.size(5) == 3
    only = training_source(config.replace(["env.levels=[1,2]"]).env)
    assert only.levels == (1, 2) and len(only) == 4
    with pytest.raises(ConfigError, match=r"no problems at level\(s\) \[5\]"):
        training_source(config.replace(["env.levels=[1,5]"]).env)
    topped = training_source(config.replace(["env.pool.top_up=true"]).env)
    assert [topped.size(lv) for lv in (1, 2, 3, 4, 5)] == [3, 3, 3, 3, 3]  # up to the file's largest level
    assert topped.get(2, 0).id == "cur/3" and topped.get(2, 1).meta["split"] == "train"
    some = training_source(config.replace(["env.pool.top_up=[2]"]).env)
    assert [some.size(lv) for lv in some.levels] == [3, 3, 1]
    # a relative path is stored absolute, so a resumed run finds the file from any directory
    assert config.env.pool.path == path


@pytest.mark.parametrize("overrides, fragment", [
    (["env.pool.kind=curated"], "env.pool.kind: must be one of split, skewed, file, got 'curated'"),
    (["env.pool.kind=file"], "env.pool.path: kind file needs a path"),
    (["env.pool.kind=file", "env.pool.path=/nonexistent/pool.jsonl"], "env.pool.path: file not found"),
    (["env.pool.path=/tmp/x.jsonl"], "env.pool.path: only kind file reads a path"),
    (["env.pool.size=10"], "env.pool.size: only kind skewed reads a size"),
    (["env.pool.kind=skewed", "env.pool.size=0"], "env.pool.size: must be >= 1"),
    (["env.pool.kind=skewed", "env.pool.top_up=true"], "env.pool.top_up: only kind file"),
    (["env.pool.kind=skewed", "env.id=CuMa-GSM8K-v0"], "skewed needs a levelled env"),
    (["env.pool.knd=file"], "unknown key 'env.pool.knd' (did you mean 'env.pool.kind'?)"),
    (["env.pool=3"], "env.pool must be a mapping"),
])
def test_bad_pool_keys_are_one_clear_line(overrides, fragment):
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=overrides)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_a_bad_curated_file_is_one_line_at_run_build(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "problem": "1+1?", "answer": "2"}])
    config = load_config(overrides=["env.pool.kind=file", f"env.pool.path={path}"])
    with pytest.raises(ConfigError, match=r"env.pool.path: .*bad.jsonl:1: record has no 'level' field$"):
        training_source(config.env)
    (tmp_path / "bad.jsonl").unlink()
    with pytest.raises(ConfigError, match="env.pool.path: file not found"):
        training_source(config.env)


def test_a_saved_skewed_run_config_rebuilds_the_same_pool_on_resume(tmp_path):
    from agents.trainer import Trainer

    config = load_config(preset="tiny-cuma", overrides=["env.pool.kind=skewed", "env.pool.size=500",
                                                        "env.source_seed=2"])
    trainer = Trainer.new(config, tmp_path / "run")  # writes config.yaml, builds nothing yet
    saved = from_dict(read_yaml(trainer.run_dir / "config.yaml"))
    assert saved == config and saved.env.pool.kind == "skewed"
    assert ids_by_level(training_source(saved.env)) == ids_by_level(training_source(config.env))
    with pytest.raises(ConfigError, match="cannot change env.pool"):  # the pool is part of what a run computes
        Trainer.resume(trainer.run_dir, ["env.pool.size=400"])


@pytest.mark.slow
def test_a_resumed_skewed_run_trains_on_the_skewed_pool(tiny_base_dir, tmp_path):
    from agents.trainer import Trainer

    overrides = [f"model.path={tiny_base_dir}", "env.pool.kind=skewed", "train.steps=1", "rollout.prompts_per_step=2",
                 "eval.n_per_level=2", "eval.samples=1", "output.progress=false", "output.tensorboard=false",
                 "curriculum.options.steps_per_level=[1,1,1,1,1]"]
    run_dir = tmp_path / "run"
    first = Trainer.new(load_config(preset="tiny-cuma", overrides=overrides), run_dir)
    first.run()
    resumed = Trainer.resume(run_dir, ["train.steps=2"])
    resumed.run()
    source = resumed.rollout.curriculum.sampler.source
    assert source.name == "arith-math-skewed" and [source.size(lv) for lv in source.levels] == [60, 134, 164, 174, 218]
