"""curricula.mixing: weighted unions of sources, calibrated files binned by measured level, skewed pools."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from cuma_env import ArithmeticSource, PoolSource, Problem
from curricula.mixing import MATH_LEVEL_COUNTS, MixedSource, load_curated_source, measured_source, skewed_pool, top_up
from curricula.sampler import LevelSampler


def pool(name: str, sizes: dict[int, int]) -> PoolSource:
    return PoolSource(name, [Problem(id=f"{name}-{lv}-{i}", prompt=f"{name} problem {lv}.{i}", level=lv,
                                     source=name, answer=str(i)) for lv, n in sizes.items() for i in range(n)])


def owners(source, level: int, indices=None) -> list[str]:
    indices = range(source.size(level)) if indices is None else indices
    return [source.get(level, i).source for i in indices]


def test_levels_are_the_union_and_sum_epoch_is_a_bijection():
    a, b = pool("a", {1: 6, 2: 4}), pool("b", {2: 3, 3: 5})
    mix = MixedSource("ab", [(a, 1.0), (b, 3.0)], epoch="sum")
    assert mix.levels == (1, 2, 3)
    assert [mix.size(lv) for lv in mix.levels] == [6, 7, 5]
    ids = [mix.get(2, i).id for i in range(7)]
    assert sorted(ids) == sorted([f"a-2-{i}" for i in range(4)] + [f"b-2-{i}" for i in range(3)])
    # items of each part keep their own order
    assert [i for i in ids if i.startswith("a")] == [f"a-2-{i}" for i in range(4)]


def test_sum_epoch_prefix_follows_weights_until_a_part_runs_out():
    a, b = pool("a", {1: 100}), pool("b", {1: 100})
    mix = MixedSource("ab", [(a, 1.0), (b, 3.0)], epoch="sum")
    first = Counter(owners(mix, 1, range(80)))
    assert first == {"a": 20, "b": 60}
    assert Counter(owners(mix, 1)) == {"a": 100, "b": 100}


def test_balanced_epoch_gives_weight_shares_in_every_window_and_covers_every_item():
    a, b = pool("a", {1: 500}), pool("b", {1: 40})  # a big natural pool, a small curated set
    mix = MixedSource("ab", [(a, 0.5), (b, 0.5)])
    assert mix.size(1) == 1000  # smallest length that gives a its 500 slots at a 50 % share
    assert mix.shares(1) == {"0:a": 0.5, "1:b": 0.5}
    seq = owners(mix, 1)
    for start in (0, 137, 600):  # any window is close to the weights
        window = Counter(seq[start:start + 100])
        assert abs(window["b"] - 50) <= 1
    ids = Counter(mix.get(1, i).id for i in range(mix.size(1)))
    assert len([k for k in ids if k.startswith("a-")]) == 500 and all(ids[f"a-1-{i}"] == 1 for i in range(500))
    assert {ids[f"b-1-{i}"] for i in range(40)} <= {12, 13}  # the small set repeats evenly


def test_weights_hold_under_the_shuffling_level_sampler():
    a, b = pool("a", {1: 300}), pool("b", {1: 30})
    mix = MixedSource("ab", [(a, 3.0), (b, 1.0)])
    sampler = LevelSampler(mix, seed=7)
    drawn = Counter(sampler.draw(1).source for _ in range(mix.size(1)))  # one full shuffled epoch
    assert drawn["b"] / mix.size(1) == pytest.approx(0.25, abs=0.005)
    plain = MixedSource("ab", [(a, 3.0), (b, 1.0)], epoch="sum")
    sampler = LevelSampler(plain, seed=7)
    drawn = Counter(sampler.draw(1).source for _ in range(plain.size(1)))
    assert drawn["b"] == 30  # "sum" epochs: a shuffled epoch sees each part by its size, not its weight


def test_weight_none_is_the_plain_union_and_per_level_weights_select_parts():
    a, b = pool("a", {1: 5, 2: 7}), pool("b", {1: 3, 2: 2})
    union = MixedSource("u", [(a, None), (b, None)])
    assert union.size(1) == 8 and union.size(2) == 9
    assert sorted(p.id for p in (union.get(1, i) for i in range(8))) == sorted(
        [f"a-1-{i}" for i in range(5)] + [f"b-1-{i}" for i in range(3)])
    only_easy = MixedSource("e", [(a, 1.0), (b, {1: 1.0})])  # b takes part at level 1 only
    assert set(owners(only_easy, 2)) == {"a"}
    assert set(owners(only_easy, 1)) == {"a", "b"}


def test_get_is_deterministic_across_instances():
    a, b = pool("a", {1: 13}), pool("b", {1: 7})
    one = MixedSource("ab", [(a, 2.0), (b, 1.0)])
    two = MixedSource("ab", [(a, 2.0), (b, 1.0)])
    assert [one.get(1, i).id for i in range(one.size(1))] == [two.get(1, i).id for i in range(two.size(1))]


def test_mixing_with_the_procedural_family():
    arith = ArithmeticSource("train")
    extra = pool("curated", {1: 10, 2: 10})
    mix = MixedSource("arith+curated", [(arith, 1.0), (extra, 1.0)], epoch="sum")
    assert mix.size(1) == arith.size(1) + 10 and mix.size(5) == arith.size(5)
    assert mix.get(5, 3) == arith.get(5, 3)


@pytest.mark.parametrize("parts, message", [
    ([], "at least one"),
    ([(pool("a", {1: 2}), 0.0)], "weight must be"),
    ([(pool("a", {1: 2}), -1)], "weight must be"),
    ([(pool("a", {1: 2}), float("nan"))], "weight must be"),
    ([(pool("a", {1: 2}), True)], "weight must be"),
    ([(pool("a", {1: 2}), {3: 1.0})], "does not serve"),
    ([(pool("a", {1: 2}),)], "pair"),
])
def test_bad_parts_are_clear_errors(parts, message):
    with pytest.raises(ValueError, match=message):
        MixedSource("bad", parts)


def test_other_errors():
    with pytest.raises(TypeError, match="not a ProblemSource"):
        MixedSource("bad", [(object(), 1.0)])
    with pytest.raises(ValueError, match="epoch"):
        MixedSource("bad", [(pool("a", {1: 2}), 1.0)], epoch="shuffle")

    class Endless:
        name, levels = "endless", (1,)

        def size(self, level):
            return None

        def get(self, level, index):
            return Problem(id=str(index), prompt="x?", level=1, source="endless")

    with pytest.raises(ValueError, match="unbounded"):
        MixedSource("bad", [(Endless(), 1.0)])
    mix = MixedSource("a", [(pool("a", {1: 2}), 1.0)])
    with pytest.raises(KeyError, match="level 4"):
        mix.get(4, 0)
    with pytest.raises(IndexError):
        mix.get(1, 2)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_measured_source_bins_by_measured_level(tmp_path):
    records = [{"id": f"c{i}", "problem": f"What is {i} + 1?", "level": 1, "answer": str(i + 1), "source": "curated",
                "measured_level": 1 + i % 3, "agreement": 0.5} for i in range(9)]
    path = write_jsonl(tmp_path / "calibrated.jsonl", records)
    by_measured = measured_source(path)
    assert by_measured.levels == (1, 2, 3) and [by_measured.size(lv) for lv in (1, 2, 3)] == [3, 3, 3]
    p = by_measured.get(2, 0)
    assert (p.id, p.level, p.answer, p.source, p.meta["agreement"]) == ("c1", 2, "2", "curated", 0.5)
    assert load_curated_source(path).levels == (1,)  # the requested level
    assert by_measured.name == "calibrated"


def test_curated_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        measured_source(tmp_path / "missing.jsonl")
    path = write_jsonl(tmp_path / "raw.jsonl", [{"problem": "What is 1 + 1?", "level": 1}])
    with pytest.raises(ValueError, match="calibrate"):
        measured_source(path)
    path = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "What is 1 + 1?", "level": 7}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: level must be one of"):
        load_curated_source(path)
    path = write_jsonl(tmp_path / "null.jsonl", [{"problem": "a?", "level": None}, {"problem": "b?", "level": 2}])
    assert len(load_curated_source(path)) == 1
    with pytest.raises(ValueError, match="null"):
        load_curated_source(path, skip_missing=False)


def test_skewed_pool_has_math_proportions():
    arith = ArithmeticSource("train")
    skewed = skewed_pool(arith, total=750, seed=0)  # the level-1 bin (60) fits the 63 train problems of level 1
    counts = [skewed.size(lv) for lv in (1, 2, 3, 4, 5)]
    assert counts == [60, 134, 164, 174, 218] and sum(counts) == 750
    expected = np.array(list(MATH_LEVEL_COUNTS.values())) / sum(MATH_LEVEL_COUNTS.values())
    assert np.allclose(np.array(counts) / 750, expected, atol=0.001)
    assert len({p.id for p in skewed.problems()}) == 750
    assert [p.id for p in skewed_pool(arith, total=750, seed=0).problems()] == [p.id for p in skewed.problems()]
    assert [p.id for p in skewed_pool(arith, total=750, seed=1).problems()] != [p.id for p in skewed.problems()]
    assert skewed_pool(arith, [1, 1], total=10).levels == (1, 2)


def test_skewed_pool_errors():
    arith = ArithmeticSource("train")
    with pytest.raises(ValueError, match="only 63"):
        skewed_pool(arith, {1: 1.0}, total=64)
    with pytest.raises(ValueError, match="does not serve"):
        skewed_pool(pool("a", {1: 5}), {1: 1.0, 2: 1.0}, total=4)
    with pytest.raises(ValueError, match="positive int"):
        skewed_pool(arith, total=0)


def test_top_up_fills_the_easy_bins_without_duplicates():
    arith = ArithmeticSource("train")
    skewed = skewed_pool(arith, {1: 1, 2: 2, 3: 4}, total=70)  # 10 / 20 / 40
    extra = ArithmeticSource("train", seed=3)  # the same problems in another order: duplicates must be skipped
    topped = top_up(skewed, extra, levels=(1, 2))
    assert [topped.size(lv) for lv in (1, 2, 3)] == [40, 40, 40]
    for lv in (1, 2):
        ids = [p.id for p in topped.problems([lv])]
        assert len(set(ids)) == len(ids) and ids[:skewed.size(lv)] == [p.id for p in skewed.problems([lv])]
    assert top_up(skewed, extra, levels=(1,), target={1: 15}).size(1) == 15
    assert top_up(skewed, extra, levels=(1,), target=5).size(1) == 10  # never removes
    # the procedural family has only 63 train problems at level 1: a too-high target stays short
    assert top_up(skewed, extra, levels=(1,), target=500).size(1) == 63
