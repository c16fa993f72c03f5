"""The procedural family's three splits: disjoint over *unordered* operands at every level (a problem and its
commuted twin always share a split), about 70/10/20 %, reproducible per seed, and reachable from every face."""

from __future__ import annotations

import numpy as np
import pytest

from cuma_env.arithmetic import SPLITS, ArithmeticSource, level_grid
from cuma_env.problems import LEVELS


def _unordered_keys(table: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(row) for row in np.sort(table, axis=1).tolist()}


def _operand_table(split: str, level: int) -> np.ndarray:
    """All operand tuples a split serves at a level, in its order (level 5 has 729k in all: read in bulk,
    spot-checked against what `get` serves)."""
    source = ArithmeticSource(split, seed=3)
    table = source._operands(level)
    for i in (0, 1, len(table) // 2, len(table) - 1):
        assert source.get(level, i).meta["operands"] == [int(v) for v in table[i]]
    assert len(table) == source.size(level)
    return table


@pytest.mark.parametrize("level", LEVELS)
def test_the_splits_partition_each_level_and_share_no_unordered_operand_set(level):
    tables = {split: _operand_table(split, level) for split in SPLITS}
    everything = np.concatenate(list(tables.values()))
    assert len(everything) == len(level_grid(level))  # every problem in exactly one split
    assert len(np.unique(everything, axis=0)) == len(everything)
    keys = {split: _unordered_keys(t) for split, t in tables.items()}
    assert keys["train"].isdisjoint(keys["validation"])
    assert keys["train"].isdisjoint(keys["test"])
    assert keys["validation"].isdisjoint(keys["test"])


def _codes(table: np.ndarray) -> np.ndarray:
    """One integer per operand tuple (operands are below 100)."""
    return (table * (100 ** np.arange(table.shape[1])[::-1])).sum(axis=1)


@pytest.mark.parametrize("level", LEVELS)
def test_every_reordering_of_the_operands_lands_in_the_same_split(level):
    """Exhaustive: for each split's problems and each reordering of their operands that is also a problem of
    the level (`45 + 23` for `23 + 45`; none at level 2, whose second operand is below 10), the reordered
    problem is served by the same split."""
    from itertools import permutations

    codes = {split: _codes(_operand_table(split, level)) for split in SPLITS}
    level_codes = _codes(level_grid(level))
    moved = 0
    for split in SPLITS:
        table = _operand_table(split, level)
        for perm in permutations(range(table.shape[1])):
            reordered = _codes(table[:, list(perm)])
            exists = np.isin(reordered, level_codes)
            assert np.isin(reordered[exists], codes[split]).all(), (level, split, perm)
            moved += int((exists & (reordered != codes[split])).sum())
    assert moved == 0 if level == 2 else moved > len(level_codes) // 2


def test_commuted_twins_of_held_out_problems_are_never_in_train():
    """The leak the re-keying removes: `b + a` in train while `a + b` is held out."""
    for split in ("validation", "test"):
        source = ArithmeticSource(split)
        train = ArithmeticSource("train")
        train_prompts = {train.get(3, i).prompt for i in range(train.size(3))}
        for i in range(min(400, source.size(3))):
            a, b = source.get(3, i).meta["operands"]
            assert f"What is {b} + {a}?" not in train_prompts


def test_split_sizes_are_about_70_10_20_percent():
    for level in LEVELS[1:]:  # level 1 has only 55 unordered pairs: its shares are coarse
        total = len(level_grid(level))
        share = {split: ArithmeticSource(split).size(level) / total for split in SPLITS}
        assert share["train"] == pytest.approx(0.70, abs=0.03), (level, share)
        assert share["validation"] == pytest.approx(0.10, abs=0.02), (level, share)
        assert share["test"] == pytest.approx(0.20, abs=0.03), (level, share)
    sizes = {split: ArithmeticSource(split).size(1) for split in SPLITS}
    assert sum(sizes.values()) == 100 and min(sizes.values()) >= 5


def test_the_order_is_reproducible_per_seed_and_differs_across_seeds():
    first = [ArithmeticSource("validation", seed=7).get(4, i).id for i in range(20)]
    again = [ArithmeticSource("validation", seed=7).get(4, i).id for i in range(20)]
    other = [ArithmeticSource("validation", seed=8).get(4, i).id for i in range(20)]
    assert first == again and first != other
    assert ArithmeticSource("validation", seed=7).get(4, 0).meta["split"] == "validation"


def test_gym_make_serves_only_validation_problems():
    import gymnasium as gym

    import cuma_env  # noqa: F401  (registers the ids)

    held = {lv: _unordered_keys(_operand_table("validation", lv)) for lv in LEVELS}
    others = {lv: _unordered_keys(_operand_table("train", lv)) | _unordered_keys(_operand_table("test", lv))
              for lv in LEVELS}
    env = gym.make("CuMa-Arith-v0", split="validation")
    levels = set()
    for seed in range(60):
        observation, _ = env.reset(seed=seed)
        problem = env.unwrapped.problem
        key = tuple(sorted(problem.meta["operands"]))
        assert problem.meta["split"] == "validation" and problem.prompt in observation
        assert key in held[problem.level] and key not in others[problem.level]
        levels.add(problem.level)
    assert levels == set(LEVELS)
    env.close()


def test_the_torchrl_face_serves_the_validation_split(tiny_random_model):
    from cuma_env import make_torchrl_env

    _, tokenizer = tiny_random_model
    env = make_torchrl_env("CuMa-Arith-v0", split="validation", group_size=4, tokenizer=tokenizer, seed=0)
    ids = {pid for _ in range(5) for pid in env.reset().get("problem_id").tolist()}
    served = {ArithmeticSource("validation").get(lv, i).id for lv in range(1, 5)
              for i in range(ArithmeticSource("validation").size(lv))}
    l5 = _unordered_keys(_operand_table("validation", 5))
    for pid in ids:
        level, text = pid.split("/")[1:]
        if level == "L5":
            a, rest = text.split("+")
            b, c = rest.split("-")
            assert tuple(sorted((int(a), int(b), int(c)))) in l5
        else:
            assert pid in served


def test_datasets_backed_tasks_refuse_validation_in_one_line():
    from cuma_env.catalog import make_source

    with pytest.raises(ValueError, match=r"CuMa-Math-v0 has splits \['test', 'train'\], not 'validation'"):
        make_source("CuMa-Math-v0", "validation")


def test_eval_split_is_a_held_out_split_of_the_training_task():
    from agents.config import ConfigError, load_config

    assert load_config(overrides=["eval.split=validation"]).eval.split == "validation"
    assert load_config().eval.split == "test"
    with pytest.raises(ConfigError, match="eval.split: must be one of validation, test, got 'train'"):
        load_config(overrides=["eval.split=train"])
    with pytest.raises(ConfigError, match="eval.split: CuMa-GSM8K-v0 has the held-out split test, got 'validation'"):
        load_config(overrides=["env.id=CuMa-GSM8K-v0", "eval.split=validation"])


@pytest.mark.slow
def test_a_study_on_validation_never_reads_a_test_problem(tiny_base_dir, tmp_path, monkeypatch):
    """`cuma study --split validation`: training, the trainer's own start and end evaluations and the cells'
    per-problem evaluation all read arith problems; none of them is a test problem."""
    import json

    from agents.commands.study import main

    read: list[str] = []
    real = ArithmeticSource._operands

    def spy(self, level):
        read.append(self.split)
        return real(self, level)

    monkeypatch.setattr(ArithmeticSource, "_operands", spy)
    out = tmp_path / "study"
    assert main(["--quick", "--split", "validation", "--steps", "2", "--n-per-level", "3", "--out", str(out),
                 "--no-progress"]) == 0
    assert "test" not in read and {"train", "validation"} <= set(read)
    cell = json.loads((out / "cells" / "design" / "cuma_gated-s0" / "per_problem.json").read_text())
    assert cell["spec"]["split"] == "validation" and cell["spec"]["config"]["eval"]["split"] == "validation"
    assert cell["matches_trainer_eval"] is True  # the trainer evaluated the same validation problems
    validation = {ArithmeticSource("validation").get(lv, i).id for lv in LEVELS for i in range(3)}
    assert {pid for level in cell["levels"].values() for pid in level["ids"]} == validation
