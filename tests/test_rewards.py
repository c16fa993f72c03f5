"""The four group rewards and the per-group diagnostics, on real votes."""

import pytest

from cuma_env import EpisodeConfig, Problem, make_reward, score_group
from cuma_env.rewards import GroupOutcome

PROBLEM = Problem(id="p", prompt="What is 2 + 3?", level=1, source="t", answer="5")


def boxed(*answers):
    return [f"so \\boxed{{{a}}}" if a is not None else "no idea" for a in answers]


def score(completions, **kw):
    cfg = EpisodeConfig(group_size=len(completions), **kw)
    return score_group(PROBLEM, completions, cfg)


def test_masked_majority_rewards_the_majority_cluster_merging_equivalent_forms():
    info = score(boxed("5", "5.0", "\\frac{10}{2}", "4", "7", None, "4", "5"))
    assert info["majority"] == "5" and info["majority_count"] == 4 and not info["masked"]
    assert info["rewards"] == [1, 1, 1, 0, 0, 0, 0, 1]
    assert info["correct"] == [True, True, True, False, False, False, False, True]
    assert info["majority_correct"] is True and info["agreement"] == 0.5 and info["parse_rate"] == 7 / 8


def test_masked_majority_masks_groups_without_a_majority():
    info = score(boxed("1", "2", "3", "4", None, None, "6", "7"))
    assert info["masked"] and info["rewards"] == [0.0] * 8
    strict = score(boxed("5", "5", "5", "4", "4", "1", "2", "3"), min_votes=0.5)
    assert strict["masked"] and strict["majority_count"] == 3


def test_majority_ttrl_never_masks_and_none_never_wins():
    info = score(boxed("1", "2", "3", "4", None, None, None, None), reward="majority")
    assert not info["masked"] and info["rewards"] == [1, 0, 0, 0, 0, 0, 0, 0]
    empty = score(boxed(None, None, None, None), reward="majority")
    assert empty["rewards"] == [0.0] * 4 and empty["majority"] is None


def test_ttrl_with_empty_votes_rewards_empty_completions_when_they_are_the_majority():
    info = score(boxed("5", "5", None, None, None, "4", "5", None), reward="majority", empty_votes=True)
    assert info["majority"] is None and info["majority_count"] == 4 and info["parse_rate"] == 0.5
    assert info["rewards"] == [0, 0, 1, 1, 1, 0, 0, 1]
    assert info["correct"] == [True, True, False, False, False, False, True, False]
    assert info["majority_correct"] is False
    answered = score(boxed("5", "5", "5", None, None, "4", "5", None), empty_votes=True)
    assert answered["majority"] == "5" and answered["rewards"] == [1, 1, 1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="empty_votes must be a bool"):
        EpisodeConfig(empty_votes="yes")


def test_ground_truth_uses_the_hidden_answer_and_needs_one():
    info = score(boxed("4", "4", "4", "5"), reward="ground_truth")
    assert info["rewards"] == [0, 0, 0, 1] and info["majority_correct"] is False
    unlabeled = Problem(id="u", prompt="q?", level=1, source="t")
    with pytest.raises(ValueError, match="reference answer"):
        score_group(unlabeled, boxed("1", "1"), EpisodeConfig(group_size=2, reward="ground_truth"))


def test_self_certainty_takes_caller_statistics():
    info = score_group(PROBLEM, boxed("5", "4"), EpisodeConfig(group_size=2, reward="self_certainty"),
                       token_stats=[0.3, 1.2])
    assert info["rewards"] == [0.3, 1.2] and not info["masked"]
    with pytest.raises(ValueError, match="token_stats"):
        score(boxed("5", "4"), reward="self_certainty")


def test_callable_rewards_and_bad_names():
    info = score(boxed("5", "4"), reward=lambda group: [len(a or "") for a in group.answers])
    assert info["rewards"] == [1.0, 1.0] and info["reward_name"] == "<lambda>"
    custom = score(boxed("5", "4"), reward=lambda g: GroupOutcome(rewards=(0.0, 0.0), masked=True))
    assert custom["masked"]
    with pytest.raises(ValueError, match="unknown reward"):
        make_reward("accuracy")
    with pytest.raises(ValueError, match="min_votes"):
        EpisodeConfig(group_size=4, min_votes=5)
