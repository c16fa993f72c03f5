"""Majority vote: clusters of equivalent answers, None never wins, masking, ties, min_votes, invariants."""

import math
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cuma_env.answers import canonical_key, is_equivalent
from cuma_env.voting import Vote, majority_vote


def test_equivalent_forms_vote_together():
    vote = majority_vote(["5", "5.0", "\\frac{10}{2}", "4", "7", None, "4", "x = 5"])
    assert vote.label == "5" and vote.count == 4 and not vote.masked
    assert vote.rewards == (1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    assert vote.clusters == ((0, 1, 2, 7), (3, 6), (4,))
    assert vote.group_size == 8 and vote.agreement == 0.5 and vote.parse_rate == 7 / 8


def test_mask_when_no_cluster_reaches_min_votes():
    vote = majority_vote(["1", "2", "3", None])
    assert vote.masked and vote.rewards == (0.0,) * 4 and vote.label == "1" and vote.count == 1


def test_none_never_votes_and_never_wins():
    vote = majority_vote([None, None, None, "3", "3"])
    assert vote.label == "3" and vote.count == 2 and not vote.masked
    assert vote.rewards == (0.0, 0.0, 0.0, 1.0, 1.0)
    empty = majority_vote([None, None])
    assert empty.label is None and empty.count == 0 and empty.masked and empty.clusters == ()
    assert empty.rewards == (0.0, 0.0) and empty.parse_rate == 0.0
    nothing = majority_vote([])
    assert nothing.masked and nothing.rewards == () and nothing.agreement == 0.0


def test_empty_votes_lets_unparsable_answers_vote_as_one_cluster():
    """TTRL's own convention: a group of mostly empty answers is rewarded for being empty."""
    vote = majority_vote([None, "3", None, "3", None], empty_votes=True)
    assert vote.label is None and vote.count == 3 and not vote.masked
    assert vote.rewards == (1.0, 0.0, 1.0, 0.0, 1.0) and vote.empty == (0, 2, 4)
    assert vote.clusters == ((0, 2, 4), (1, 3)) and vote.parse_rate == 2 / 5 and vote.agreement == 3 / 5
    tie = majority_vote(["3", None, "3", None], empty_votes=True)  # ties: the cluster seen first, as always
    assert tie.label == "3" and tie.rewards == (1.0, 0.0, 1.0, 0.0)
    weak = majority_vote([None, None, "1", "2"], min_votes=3, empty_votes=True)
    assert weak.masked and weak.label is None and weak.rewards == (0.0,) * 4
    assert majority_vote(["$ $", None, "1"], empty_votes=True).label is None  # normalises to nothing = empty
    assert majority_vote([None, None, "3"]).label == "3"  # the default is unchanged


def test_ties_go_to_the_cluster_seen_first():
    vote = majority_vote(["2", "1", "1", "2", "3"])
    assert vote.label == "2" and vote.clusters == ((0, 3), (1, 2), (4,))
    assert vote.rewards == (1.0, 0.0, 0.0, 1.0, 0.0)


def test_label_is_the_first_member_spelling():
    assert majority_vote(["0.5", "\\frac{1}{2}", "1/2"]).label == "0.5"


@pytest.mark.parametrize("min_votes, size, expected_threshold", [
    (1, 8, 1), (2, 8, 2), (0.5, 8, 4), (0.3, 10, 3), (1.0, 4, 4), (0.01, 8, 1), (0.25, 8, 2),
])
def test_min_votes_count_or_ratio(min_votes, size, expected_threshold):
    for count in range(1, size + 1):
        answers = ["7"] * count + [str(100 + k) for k in range(size - count)]
        assert majority_vote(answers, min_votes=min_votes).masked == (count < expected_threshold)


@pytest.mark.parametrize("bad", [0, -1, 1.5, 0.0, -0.5, float("nan"), True, "2", None, 2.0])
def test_bad_min_votes_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="min_votes"):
        majority_vote(["1", "1"], min_votes=bad)


def test_vote_is_a_frozen_record():
    vote = majority_vote(["1"])
    assert isinstance(vote, Vote)
    with pytest.raises(AttributeError):
        vote.count = 3  # type: ignore[misc]


# Answers whose equivalences are decided without sympy, so the properties run fast.
POOL = ["1", "1.0", "\\frac{2}{2}", "2", "x = 2", "0.5", "\\frac{1}{2}", "1/2", "3", "\\sqrt{9}", "7", None]
answers_st = st.lists(st.sampled_from(POOL), min_size=0, max_size=12)
min_votes_st = st.one_of(st.integers(min_value=1, max_value=6), st.floats(min_value=0.05, max_value=1.0))


@settings(max_examples=150, deadline=None)
@given(answers_st, min_votes_st, st.randoms(use_true_random=False))
def test_permutation_keeps_label_cluster_and_mask(answers, min_votes, rnd):
    vote = majority_vote(answers, min_votes=min_votes)
    shuffled = list(answers)
    rnd.shuffle(shuffled)
    other = majority_vote(shuffled, min_votes=min_votes)
    assert other.masked == vote.masked and other.count == vote.count
    sizes = [len(c) for c in vote.clusters]
    assume(len(sizes) < 2 or sizes[0] > sizes[1])  # with a tie, the first-seen cluster wins
    if vote.label is not None:
        assert is_equivalent(vote.label, other.label, timeout=0)


@settings(max_examples=150, deadline=None)
@given(answers_st, min_votes_st)
def test_mask_and_reward_invariants(answers, min_votes):
    vote = majority_vote(answers, min_votes=min_votes)
    n = len(answers)
    threshold = min_votes if isinstance(min_votes, int) else max(1, math.ceil(min_votes * n - 1e-9))
    largest = max((len(c) for c in vote.clusters), default=0)
    assert vote.count == largest
    assert vote.masked == (largest < threshold)
    assert sum(vote.rewards) == (0 if vote.masked else vote.count)
    assert len(vote.rewards) == n and set(vote.rewards) <= {0.0, 1.0}
    assert all(vote.rewards[i] == 0.0 for i, a in enumerate(answers) if a is None)
    assert sorted(i for c in vote.clusters for i in c) == [i for i, a in enumerate(answers) if a is not None]
    for cluster in vote.clusters:  # members of one cluster are equivalent, clusters are distinct
        assert len({canonical_key(answers[i]) for i in cluster} - {None}) >= 1
        assert all(is_equivalent(answers[cluster[0]], answers[i], timeout=0) for i in cluster)
    keys = [tuple(sorted(c)) for c in vote.clusters]
    assert keys == sorted(keys, key=lambda c: (-len(c), c[0]))


def test_large_group_is_fast_and_exact():
    rnd = random.Random(0)
    answers = [rnd.choice(["42", "42.0", "\\frac{84}{2}", "41", None]) for _ in range(256)]
    vote = majority_vote(answers)
    want = sum(a in ("42", "42.0", "\\frac{84}{2}") for a in answers)
    assert vote.count == want and vote.label in ("42", "42.0", "\\frac{84}{2}")


@settings(max_examples=100, deadline=None)
@given(answers_st, min_votes_st)
def test_empty_votes_adds_exactly_one_cluster_of_the_unparsable(answers, min_votes):
    vote, default = majority_vote(answers, min_votes, empty_votes=True), majority_vote(answers, min_votes)
    empties = tuple(i for i, a in enumerate(answers) if a is None)
    assert vote.empty == empties and vote.parse_rate == default.parse_rate
    assert set(vote.clusters) - {empties} == set(default.clusters)
    assert vote.count == max(default.count, len(empties))
    assert (vote.label is None and vote.count > 0) == (vote.clusters[:1] == (empties,) and bool(empties))


# --- one conversion of min_votes: the vote, the env, the config, the CLI and the curriculum share it -------
@pytest.mark.parametrize("bad", [0, -2, 1.5, 0.0, 2.0, float("nan"), 9])
def test_env_config_cli_and_curriculum_refuse_min_votes_with_the_same_line(bad):
    from agents.commands import min_votes_option
    from agents.config import ConfigError, load_config
    from cuma_env import EpisodeConfig
    from cuma_env.voting import resolve_min_votes
    from curricula import AgreementGated

    def message(call, error=ValueError):
        with pytest.raises(error) as info:
            call()
        return str(info.value)

    def expected(name, size_name, value=bad):
        return message(lambda: resolve_min_votes(value, 8, name=name, size_name=size_name, within_group=True))

    assert message(lambda: EpisodeConfig(group_size=8, min_votes=bad)) == expected("min_votes", "group_size")
    assert message(lambda: load_config(overrides=[f"env.min_votes={bad}", "rollout.group_size=8"]), ConfigError) \
        == expected("env.min_votes", "rollout.group_size")
    if not (isinstance(bad, float) and bad.is_integer()):  # the CLI reads 2.0 as the count 2
        read = int(bad) if bad >= 1 and float(bad).is_integer() else float(bad)  # whole numbers >= 1: counts
        assert message(lambda: min_votes_option(float(bad), 8, "--group-size")) == \
            expected("--min-votes", "--group-size", read)
    if bad != 9:  # the curriculum's strict cluster size is a threshold of the same kind (no group bound)
        assert message(lambda: AgreementGated(strict_votes=bad)) == expected("strict_votes", "group_size")
    assert "\n" not in expected("min_votes", "group_size")


@pytest.mark.parametrize("good", [1, 2, 8, 0.75, 0.5, 1.0, 0.01])
def test_the_threshold_the_vote_applies_is_resolve_min_votes(good):
    from cuma_env import EpisodeConfig, score_group
    from cuma_env.problems import Problem
    from cuma_env.voting import resolve_min_votes

    count = resolve_min_votes(good, 8)
    config = EpisodeConfig(group_size=8, min_votes=good)
    problem = Problem(id="p", prompt="2 + 3?", level=1, source="t")
    for top in range(1, 9):
        completions = ["\\boxed{7}"] * top + [f"\\boxed{{{100 + k}}}" for k in range(8 - top)]
        assert score_group(problem, completions, config)["masked"] == (top < count)
