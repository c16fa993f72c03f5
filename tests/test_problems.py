"""Problem records, pool sources and the procedural arithmetic family."""

import pytest

from cuma_env import ArithmeticSource, PoolSource, Problem, ProblemSource
from cuma_env.arithmetic import evaluate


def test_problem_validates_level_and_prompt():
    with pytest.raises(ValueError, match="level"):
        Problem(id="x", prompt="1+1?", level=7, source="t")
    with pytest.raises(ValueError, match="prompt"):
        Problem(id="x", prompt="  ", level=1, source="t")
    p = Problem(id="x", prompt="1+1?", level=1, source="t", answer="2")
    assert p.to_json()["problem"] == "1+1?" and p.to_json()["answer"] == "2"


def test_pool_source_groups_by_level_and_reports_bad_requests():
    probs = [Problem(id=str(i), prompt=f"q{i}", level=1 + i % 2, source="t") for i in range(5)]
    pool = PoolSource("t", probs)
    assert isinstance(pool, ProblemSource)
    assert pool.levels == (1, 2) and pool.size(1) == 3 and pool.size(2) == 2
    assert pool.get(2, 1).id == "3"
    with pytest.raises(KeyError, match="levels are"):
        pool.get(4, 0)
    with pytest.raises(IndexError):
        pool.get(1, 3)
    assert len(pool.filter_levels([2])) == 2


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_arithmetic_answers_are_correct_and_deterministic(level):
    a, b = ArithmeticSource(seed=3), ArithmeticSource(seed=3)
    for i in range(50):
        p = a.get(level, i)
        assert p == b.get(level, i)
        assert p.level == level and p.answer == str(evaluate(tuple(p.meta["operands"]), level))
        assert int(p.answer) == eval(p.prompt.removeprefix("What is ").removesuffix("?"))


def test_arithmetic_seed_changes_order_not_content():
    a, b = ArithmeticSource(seed=0), ArithmeticSource(seed=1)
    ids_a = {a.get(1, i).id for i in range(a.size(1))}
    ids_b = {b.get(1, i).id for i in range(b.size(1))}
    assert ids_a == ids_b
    assert [a.get(3, i).id for i in range(20)] != [b.get(3, i).id for i in range(20)]


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_train_and_test_splits_never_overlap(level):
    train, test = ArithmeticSource("train"), ArithmeticSource("test")
    n = min(train.size(level), 3000)
    train_ids = {train.get(level, i).id for i in range(n)}
    test_ids = {test.get(level, i).id for i in range(min(test.size(level), 3000))}
    assert not train_ids & test_ids
    assert 0.1 < test.size(level) / (train.size(level) + test.size(level)) < 0.3


def test_arithmetic_difficulty_ladder_grows():
    src = ArithmeticSource()
    sizes = [src.size(lv) for lv in range(1, 6)]
    assert sizes[0] < sizes[1] < sizes[2] <= sizes[3] < sizes[4]
    with pytest.raises(ValueError, match="split"):
        ArithmeticSource("eval")
    with pytest.raises(KeyError):
        ArithmeticSource(levels=(1, 2)).get(3, 0)


def test_every_level_check_accepts_exactly_the_levels_of_cuma_env_problems(tmp_path):
    """The catalog, the config, the curation CLI and pipeline agree with `LEVELS` (one definition of the levels)."""
    import argparse

    from agents.commands.curate import _levels as curate_levels
    from agents.config import ConfigError, load_config
    from cuma_env import LEVELS, make_source
    from curricula.curation.pipeline import CurationConfig

    outside = (min(LEVELS) - 1, max(LEVELS) + 1)
    assert make_source("CuMa-Arith-v0").levels == LEVELS
    assert load_config(overrides=[f"env.levels={list(LEVELS)}"]).env.levels == list(LEVELS)
    assert curate_levels(",".join(map(str, LEVELS))) == LEVELS
    assert CurationConfig(out=tmp_path / "c.jsonl").levels == LEVELS
    for level in outside:
        with pytest.raises(ValueError, match="levels"):
            make_source("CuMa-Arith-v0", levels=[level])
        with pytest.raises(ConfigError, match="env.levels"):
            load_config(overrides=[f"env.levels=[{level}]"])
        with pytest.raises(ConfigError, match="env.pool.top_up"):
            load_config(overrides=["env.pool.kind=file", f"env.pool.top_up=[{level}]"])
        with pytest.raises(argparse.ArgumentTypeError, match="levels"):
            curate_levels(str(level))
        with pytest.raises(ValueError, match="levels"):
            CurationConfig(out=tmp_path / "c.jsonl", levels=(level,))
