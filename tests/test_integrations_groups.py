"""`score_blocks`: a trainer's flat batch, cut into groups of G, votes exactly as the Gymnasium face does."""

from __future__ import annotations

import gymnasium as gym
import pytest

import cuma_env  # noqa: F401  (registers the envs)
from cuma_env import EpisodeConfig
from cuma_env.catalog import make_source
from cuma_env.integrations import check_blocks, rewards_per_row, score_blocks


def test_blocks_score_like_gym_steps_on_the_same_problems():
    env = gym.make("CuMa-Arith-v0", group_size=4, min_votes=2)
    groups = [["\\boxed{5}", "5", "\\boxed{6}", "\\boxed{5}"], ["\\boxed{1}", "\\boxed{2}", "x", "\\boxed{3}"]]
    problems, expected = [], []
    for seed, group in enumerate(groups):
        env.reset(seed=seed)
        problems.append(env.unwrapped.problem)
        expected.append(env.step(group)[4])
    scored = score_blocks([c for g in groups for c in g], 4, EpisodeConfig(min_votes=2), problems)
    for got, info in zip(scored, expected):
        assert got.info == info and list(got.rewards) == info["rewards"] and got.masked == info["masked"]
    assert rewards_per_row(scored, masked=None) == [1.0, 1.0, 0.0, 1.0, None, None, None, None]
    assert rewards_per_row(scored) == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_partial_groups_and_mixed_problems_are_refused():
    with pytest.raises(ValueError, match="do not form whole groups of 4"):
        score_blocks(["\\boxed{1}"] * 6, 4)
    assert check_blocks(8, 4) == 2
    a, b = (make_source("CuMa-Arith-v0").get(1, i) for i in range(2))
    with pytest.raises(ValueError, match="group 0 mixes problems"):
        score_blocks(["\\boxed{1}"] * 4, 2, problems=[a, b, b, b])
    per_row = score_blocks(["\\boxed{1}"] * 4, 2, problems=[a, a, b, b])
    assert [g.info["problem_id"] for g in per_row] == [a.id, b.id]


def test_the_trainers_group_size_wins_and_a_stream_hears_every_group():
    heard = []

    class Recorder:
        def next_problem(self):
            raise AssertionError("score_blocks never draws")

        def observe(self, info):
            heard.append(info["group_size"])

    scored = score_blocks(["\\boxed{3}"] * 6, 3, EpisodeConfig(group_size=8, min_votes=3), stream=Recorder())
    assert heard == [3, 3] and all(not g.masked for g in scored)
    stats = score_blocks(["a", "b"], 2, EpisodeConfig(reward="self_certainty"), token_stats=[0.25, 0.5])
    assert stats[0].rewards == (0.25, 0.5)
