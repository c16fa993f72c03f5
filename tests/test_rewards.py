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


# --- which rewards are label-free: each reward's own declaration ------------------------------------------
class _ConstantReward:
    """A registered reward whose values (all distinct) differ from the vote's, declared labelled or not."""

    uses_labels = True

    def __init__(self):
        self.name = "constant_test_reward"

    def __call__(self, group):
        return GroupOutcome(rewards=tuple(float(i) for i in range(group.size)), masked=False)


def test_a_registered_reward_declaring_labels_is_never_read_as_label_free(monkeypatch):
    from cuma_env.rewards import REWARDS, reward_uses_labels
    from curricula.stats import stats_from_info

    monkeypatch.setitem(REWARDS, "constant_test_reward", _ConstantReward)
    completions = boxed("5", "5", "5", "4", "4", "1", "2", "3")
    labelled = score(completions, reward="constant_test_reward")
    vote_only = score(completions, reward="masked_majority")
    assert labelled["rewards"] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # its values would give another signal
    assert reward_uses_labels("constant_test_reward")
    # the curriculum's signal comes from the vote, exactly as for the label-free vote reward
    assert stats_from_info(labelled).mean_abs_advantage == stats_from_info(vote_only).mean_abs_advantage
    # flipping only the declaration makes the statistics read the reward's own values
    monkeypatch.setattr(_ConstantReward, "uses_labels", False)
    values = labelled["rewards"]
    mean = sum(values) / len(values)
    assert stats_from_info(labelled).mean_abs_advantage == sum(abs(v - mean) for v in values) / len(values)


def test_label_use_comes_from_the_declarations_and_unknowns_are_labelled():
    from cuma_env.rewards import REWARDS, reward_uses_labels

    assert {name: reward_uses_labels(name) for name in REWARDS} == {
        name: factory.uses_labels for name, factory in REWARDS.items()}
    assert reward_uses_labels("ground_truth") and not reward_uses_labels("masked_majority")
    assert reward_uses_labels("<lambda>") and reward_uses_labels(None)  # an unregistered callable: labelled
    assert make_reward(lambda group: [0.0] * group.size).uses_labels  # undeclared callable: the safe side

    def declared(group):
        return [0.0] * group.size

    declared.uses_labels = False
    assert not make_reward(declared).uses_labels


def test_the_config_offers_exactly_the_registered_rewards(monkeypatch):
    from agents.config import load_config
    from cuma_env.rewards import REWARDS

    for name in REWARDS:
        assert load_config(overrides=[f"env.reward={name}"]).env.reward == name
    with pytest.raises(ValueError, match="env.reward: must be one of " + ", ".join(REWARDS)):
        load_config(overrides=["env.reward=constant_test_reward"])
    monkeypatch.setitem(REWARDS, "constant_test_reward", _ConstantReward)
    assert load_config(overrides=["env.reward=constant_test_reward"]).env.reward == "constant_test_reward"
