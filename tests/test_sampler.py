"""LevelSampler: without replacement within an epoch, seeded, resumable through JSON."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuma_env import ArithmeticSource, PoolSource, Problem
from curricula.sampler import PROBE_STREAM, LevelSampler


def small_pool(sizes=(3, 5, 4)) -> PoolSource:
    problems = [Problem(id=f"p{lv}-{i}", prompt=f"What is {lv}+{i}?", level=lv, source="toy", answer=str(lv + i))
                for lv, n in enumerate(sizes, start=1) for i in range(n)]
    return PoolSource("toy", problems)


class Unbounded:
    """A source with an unbounded level (size None), walked in its own order."""

    name = "endless"
    levels = (1,)

    def size(self, level):
        return None

    def get(self, level, index):
        return Problem(id=f"e{index}", prompt=f"What is {index}+1?", level=level, source="endless")


def test_each_epoch_is_a_permutation_of_the_level():
    sampler = LevelSampler(small_pool(), seed=3)
    first = [sampler.draw(2).id for _ in range(5)]
    second = [sampler.draw(2).id for _ in range(5)]
    assert sorted(first) == sorted(second) == [f"p2-{i}" for i in range(5)]
    assert sampler.position(2) == (2, 0)
    assert all(p.level == 2 for p in (sampler.draw(2) for _ in range(7)))


def test_seed_decides_the_order_and_levels_are_independent_streams():
    a, b, c = LevelSampler(small_pool(), seed=0), LevelSampler(small_pool(), seed=0), LevelSampler(small_pool(), seed=1)
    order_a = [a.draw(2).id for _ in range(10)]
    b.draw(1), b.draw(3)  # draws of other levels do not move level 2's stream
    assert [b.draw(2).id for _ in range(10)] == order_a
    assert [c.draw(2).id for _ in range(10)] != order_a


def test_probe_stream_does_not_move_the_training_stream():
    a, b = LevelSampler(small_pool(), seed=5), LevelSampler(small_pool(), seed=5)
    b.draw_many(2, 3, stream=PROBE_STREAM)
    assert [a.draw(2).id for _ in range(5)] == [b.draw(2).id for _ in range(5)]


def test_draw_many_is_distinct_across_an_epoch_edge():
    sampler = LevelSampler(small_pool(), seed=0)
    sampler.draw(1), sampler.draw(1)
    ids = [p.id for p in sampler.draw_many(1, 3)]
    assert len(set(ids)) == 3


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), cut=st.integers(0, 40),
       levels=st.lists(st.sampled_from([1, 2, 3]), min_size=41, max_size=41))
def test_restored_sampler_continues_the_same_stream(seed, cut, levels):
    whole = LevelSampler(small_pool(), seed=seed)
    uninterrupted = [whole.draw(lv).id for lv in levels]
    first = LevelSampler(small_pool(), seed=seed)
    head = [first.draw(lv).id for lv in levels[:cut]]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = LevelSampler(small_pool(), seed=999)
    resumed.load_state_dict(state)
    assert head + [resumed.draw(lv).id for lv in levels[cut:]] == uninterrupted


def test_arithmetic_source_and_unbounded_sources():
    sampler = LevelSampler(ArithmeticSource(), seed=0)
    n = sampler.size(1)
    ids = [sampler.draw(1).id for _ in range(n)]
    assert len(set(ids)) == n  # the whole level, each problem once
    endless = LevelSampler(Unbounded(), seed=0)
    assert [endless.draw(1).id for _ in range(3)] == ["e0", "e1", "e2"]
    assert endless.position(1) == (0, 3)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="cannot sample"):
        LevelSampler(small_pool(), levels=[4])
    sampler = LevelSampler(small_pool(), levels=[1, 2])
    with pytest.raises(ValueError, match="not served"):
        sampler.draw(3)
    with pytest.raises(ValueError, match="non-negative"):
        LevelSampler(small_pool(), seed=-1)
    other = LevelSampler(small_pool(sizes=(3, 6, 4)))
    with pytest.raises(ValueError, match="problems at level 2"):
        other.load_state_dict(LevelSampler(small_pool()).state_dict())
