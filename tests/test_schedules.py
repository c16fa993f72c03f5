"""Schedules: sequential stages, the agreement gate (promote / stay / collapse / probes), the bandit, state."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuma_env import ArithmeticSource
from curricula import (
    SCHEDULES,
    AgreementGated,
    CurriculumStream,
    EpisodeStats,
    Fixed,
    LearningProgress,
    Sequential,
    Uniform,
    make_schedule,
    schedule_from_state,
    stats_from_info,
)
from curricula.stats import LABEL_KEYS


def group(level, majority, count, *, size=8, masked=None, pid=None, **extra):
    """The label-free part of a scored group's info, as `score_group` returns it."""
    return {"level": level, "majority": majority, "majority_count": count, "agreement": count / size,
            "masked": count < 2 if masked is None else masked, "parse_rate": 1.0, "group_size": size,
            "problem_id": pid if pid is not None else f"L{level}/{majority}/{count}/{extra.pop('n', 0)}",
            "rewards": [1.0] * count + [0.0] * (size - count), "reward_name": "masked_majority", **extra}


def feed(schedule, make_info, n):
    levels = []
    for i in range(n):
        levels.append(schedule.level())
        schedule.update(make_info(schedule.level(), i))
    return levels


# --- stats ---------------------------------------------------------------------------------------
def test_stats_never_carry_labels():
    info = group(2, "7", 6, n=1)
    labelled = {**info, "correct": [True] * 8, "majority_correct": True, "answer": "7"}
    assert stats_from_info(labelled) == stats_from_info(info)
    assert not {f.name for f in fields(EpisodeStats)} & LABEL_KEYS
    stats = stats_from_info(info)
    assert stats.agreement == 0.75 and stats.majority == "7" and not stats.masked
    assert stats.mean_abs_advantage == pytest.approx(2 * 0.75 * 0.25)
    # a labelled reward's values are never read: the signal comes from the vote instead
    gt = {**info, "reward_name": "ground_truth", "rewards": [0.0] * 8}
    assert stats_from_info(gt).mean_abs_advantage == stats.mean_abs_advantage
    with pytest.raises(KeyError, match="scored group"):
        stats_from_info({"level": 1, "problem_id": "x"})  # a reset() info


# --- sequential ----------------------------------------------------------------------------------
def test_sequential_moves_one_to_five_after_the_configured_steps_and_never_skips():
    schedule = Sequential(steps_per_level=4)
    levels = feed(schedule, lambda lv, i: group(lv, str(i), 8, n=i), 30)
    assert levels == [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 14
    assert all(b - a in (0, 1) for a, b in zip(levels, levels[1:]))
    assert schedule.summary()["finished"] and schedule.level_weights() == {1: 0, 2: 0, 3: 0, 4: 0, 5: 1.0}
    assert [schedule.level(step) for step in (0, 3, 4, 19, 1000)] == [1, 1, 2, 5, 5]


def test_sequential_per_level_steps_and_replay():
    schedule = Sequential(steps_per_level=[1, 2, 3], replay=0.3, levels=[1, 2, 3])
    assert feed(schedule, lambda lv, i: group(lv, "1", 8), 7) == [1, 2, 2, 3, 3, 3, 3]
    assert schedule.level_weights() == pytest.approx({1: 0.15, 2: 0.15, 3: 0.7})
    with pytest.raises(ValueError, match="entries"):
        Sequential(steps_per_level=[1, 2], levels=[1, 2, 3])
    with pytest.raises(ValueError, match="replay"):
        Sequential(replay=1.0)


def test_sequential_draws_through_a_stream_follow_the_stages():
    stream = CurriculumStream(Sequential(steps_per_level=2), ArithmeticSource(), seed=0)
    seen = []
    for _ in range(12):
        problem = stream.next_problem()
        seen.append(problem.level)
        stream.observe(group(problem.level, "3", 5, pid=problem.id))
    assert seen == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]


# --- agreement gated -----------------------------------------------------------------------------
def confident_diverse(level, i):
    return group(level, str(100 + i), 7, pid=f"q{i}")


def all_distinct(level, i):
    return group(level, str(i), 1, pid=f"q{i}")


def unanimous_same(level, i):
    return group(level, "10", 8, pid=f"q{i}")


def test_gate_promotes_on_confident_groups_with_differing_answers():
    schedule = AgreementGated()
    levels = feed(schedule, confident_diverse, 32 * 4 + 1)
    assert levels[:32] == [1] * 32 and levels[32] == 2
    assert levels[-1] == 5 and all(b - a in (0, 1) for a, b in zip(levels, levels[1:]))
    assert [e[1] for e in schedule.events] == ["promote"] * 4


def test_gate_stays_on_all_distinct_masked_groups():
    schedule = AgreementGated()
    assert set(feed(schedule, all_distinct, 300)) == {1}
    assert schedule.summary()["mask_rate"] == 1.0


def test_gate_does_not_promote_when_every_prompt_gets_the_same_unanimous_answer():
    schedule = AgreementGated()
    assert set(feed(schedule, unanimous_same, 300)) == {1}
    summary = schedule.summary()
    assert summary["collapsed"] and summary["concentration"] == 1.0 and summary["agreement"] == 1.0


def test_collapse_demotes_one_level_or_holds():
    schedule = AgreementGated(levels=[1, 2, 3])
    feed(schedule, confident_diverse, 64)
    assert schedule.level() == 3
    after = feed(schedule, unanimous_same, 40)
    # the window of the last 32 prompts' majorities reaches 12/32 >= 0.35 on the 12th collapsed group
    assert after[:12] == [3] * 12 and after[12:28] == [2] * 16 and after[28:] == [1] * 12
    held = AgreementGated(levels=[1, 2, 3], on_collapse="hold")
    feed(held, confident_diverse, 32)
    assert set(feed(held, unanimous_same, 100)) == {2}


def test_gate_with_probes_promotes_only_into_a_ready_level():
    def run(probe_count, probe_answer=None):
        calls = []

        def probe(level, problems):
            calls.append((level, [p.level for p in problems]))
            return [group(level, probe_answer or str(i), probe_count, pid=p.id) for i, p in enumerate(problems)]

        stream = CurriculumStream(AgreementGated(), ArithmeticSource(), seed=0, probe=probe)
        for i in range(96):
            problem = stream.next_problem()
            stream.observe(confident_diverse(problem.level, i) | {"problem_id": problem.id})
        return stream, calls

    ready, calls = run(probe_count=7)
    assert ready.schedule.level() == 4 and calls[0] == (2, [2] * 8)
    not_ready, calls = run(probe_count=3)  # clusters of 3 < 6 of 8: wrong answers colliding, not mastery
    assert not_ready.schedule.level() == 1
    assert len(calls) == 3  # at step 32, then every probe_interval=32 groups
    colliding, _ = run(probe_count=8, probe_answer="0")  # one answer for every probe prompt
    assert colliding.schedule.level() == 1
    assert not_ready.summary()["probe"]["passed"] is False


def test_gate_without_probe_hook_never_requests_probes():
    schedule = AgreementGated()
    feed(schedule, confident_diverse, 31)
    assert schedule.probe_request() is None


# --- learning progress, uniform, fixed -----------------------------------------------------------
def test_learning_progress_favours_the_level_whose_signal_moves():
    schedule = LearningProgress(levels=[1, 2, 3], min_visits=4)
    assert schedule.level_weights() == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 1 / 3})
    for i in range(60):
        schedule.update(group(1, str(i), 8))                 # flat
        schedule.update(group(2, str(i), 1 + min(i // 8, 7)))  # agreement climbing
        schedule.update(group(3, str(i), 1))                 # flat
    weights = schedule.level_weights()
    assert weights[2] > 0.5 and min(weights.values()) >= 0.2 / 3 - 1e-9
    assert sum(weights.values()) == pytest.approx(1.0)


def test_uniform_and_fixed():
    assert Uniform().level_weights() == pytest.approx({lv: 0.2 for lv in range(1, 6)})
    assert Uniform(levels=[1, 2], weights=[3, 1]).level_weights() == {1: 0.75, 2: 0.25}
    fixed = Fixed(3)
    feed(fixed, confident_diverse, 50)
    assert fixed.level_weights() == {3: 1.0} and fixed.level() == 3
    with pytest.raises(ValueError, match="weights"):
        Uniform(weights=[1, 2])


# --- names, configs, state -----------------------------------------------------------------------
def test_make_schedule_by_name_and_mapping():
    assert set(SCHEDULES) == {"sequential", "agreement_gated", "learning_progress", "uniform", "fixed"}
    assert isinstance(make_schedule(), Sequential)
    gated = make_schedule("agreement-gated", window=16, min_steps=16)
    assert isinstance(gated, AgreementGated) and gated.window == 16
    assert make_schedule({"name": "fixed", "level": 2}).level() == 2
    for name, cls in SCHEDULES.items():
        schedule = make_schedule(name)
        assert isinstance(schedule, cls)
        assert type(make_schedule(name, **schedule.config())) is cls
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("anti_curriculum")
    with pytest.raises(TypeError, match="sequential"):
        make_schedule("sequential", step_per_level=3)


STATS = st.builds(lambda lv, maj, count, masked, pid: group(lv, maj, count, masked=masked, pid=f"q{pid}"),
                  st.integers(1, 5), st.sampled_from(["1", "2", "10", None]), st.integers(0, 8), st.booleans(),
                  st.integers(0, 40))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(SCHEDULES)), history=st.lists(STATS, max_size=80),
       future=st.lists(STATS, max_size=40))
def test_state_round_trips_through_json_and_continues_identically(name, history, future):
    kwargs = {"agreement_gated": {"window": 4, "min_steps": 4, "concentration_min": 4, "concentration_window": 8},
              "sequential": {"steps_per_level": 7}}.get(name, {})
    original = make_schedule(name, **kwargs)
    for info in history:
        original.update(info)
    restored = schedule_from_state(json.loads(json.dumps(original.state_dict())))
    assert restored.summary() == original.summary()
    for info in future:
        original.update(info)
        restored.update(info)
        weights = original.level_weights()
        assert restored.level_weights() == weights
        assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) >= 0
    assert restored.state_dict() == original.state_dict()


# --- one definition of collapse (the logged metric, TRL's, and the guard) -----------------------------
def test_logged_collapse_and_the_guard_share_one_concentration():
    from collections import Counter

    from cuma_env.episode import collapse, prompt_concentration, vote_metrics

    majorities = ["7", "7", "3", None, "7", "12", "3"]
    labels = [m for m in majorities if m is not None]
    infos = [{"majority": m} for m in majorities]  # groups without a problem id: each its own prompt
    logged = collapse(infos)
    assert logged == Counter(labels).most_common(1)[0][1] / len(labels)
    assert (logged, len(labels)) == prompt_concentration((None, m) for m in majorities)
    assert collapse([{"majority": None}] * 2) == 0.0 and prompt_concentration([]) == (0.0, 0)
    # every reader counts each prompt once (its latest majority): a prompt drawn again is not a second vote
    drawn_twice = [{"problem_id": "a", "majority": "7"}, {"problem_id": "a", "majority": "7"},
                   {"problem_id": "b", "majority": "3"}]
    assert collapse(drawn_twice) == prompt_concentration([("a", "7"), ("a", "7"), ("b", "3")])[0] == 0.5
    scored = [{**i, "rewards": [1.0, 0.0], "masked": False, "agreement": 0.5, "parse_rate": 1.0} for i in drawn_twice]
    assert vote_metrics(scored)["collapse"] == 0.5 and vote_metrics([])["collapse"] is None
    schedule = AgreementGated(concentration_min=4, concentration_window=8)
    feed(schedule, lambda lv, i: group(lv, str(i % 3), 8, pid=f"q{i % 5}"), 12)
    window = [(f"q{i % 5}", str(i % 3)) for i in range(12)][-8:]
    assert schedule.summary()["concentration"] == round(prompt_concentration(window)[0], 4)
