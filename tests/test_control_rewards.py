"""The control rewards (`random_reward`, `format_only`) and EMPO's `cluster_share`: their values on real votes,
the coin's reproducibility and fairness, label-freeness, the Gymnasium face, and one training step of the
`tiny-random-reward` preset through the real agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium as gym
import pytest

from cuma_env import EpisodeConfig, Problem, score_group
from cuma_env.control_rewards import RandomReward

PROBLEM = Problem(id="arith/L1/2+3", prompt="What is 2 + 3?", level=1, source="t", answer="5")
CONTROLS = ("random_reward", "format_only", "cluster_share")


def boxed(*answers):
    return [f"so \\boxed{{{a}}}" if a is not None else "no idea" for a in answers]


def score(completions, reward, problem=PROBLEM, **kw):
    return score_group(problem, completions, EpisodeConfig(group_size=len(completions), reward=reward, **kw))


def test_format_only_pays_any_parsed_answer_right_or_wrong():
    info = score(boxed("5", "4", None, "\\frac{10}{2}", None, "17", "5", "x"), "format_only")
    assert info["rewards"] == [1, 1, 0, 1, 0, 1, 1, 1] and not info["masked"]
    assert info["correct"] == [True, False, False, True, False, False, True, False]  # wrong answers paid alike
    lone = score(boxed("1", "2", "3", "4"), "format_only", min_votes=4)  # no majority: the vote would mask
    assert lone["rewards"] == [1.0] * 4 and not lone["masked"]
    # the last-number fallback decides what counts as parsed, as for every reward
    assert score(["it is 5", "\\boxed{5}"], "format_only", last_number_fallback=False)["rewards"] == [0.0, 1.0]


def test_cluster_share_pays_each_answer_its_clusters_share_of_the_group():
    info = score(boxed("5", "5.0", "4", "4", "4", None, None, "7"), "cluster_share")
    assert info["rewards"] == [2 / 8, 2 / 8, 3 / 8, 3 / 8, 3 / 8, 0, 0, 1 / 8] and not info["masked"]
    majority = score(boxed("5", "5.0", "4", "4", "4", None, None, "7"), "majority")
    assert majority["rewards"] == [0, 0, 1, 1, 1, 0, 0, 0]  # winner takes all; the share grades every answer
    tie = score(boxed("1", "1", "1", "2", "2", "2", "3", "3"), "cluster_share")
    assert tie["rewards"] == [3 / 8] * 6 + [2 / 8] * 2  # no arbitrary tie-break between the two largest
    # the unanswered never earn a share, even when they vote as one cluster and win the vote
    empty = score(boxed(None, None, None, None, "5", "5", "6", None), "cluster_share", empty_votes=True)
    assert empty["majority"] is None and empty["rewards"] == [0, 0, 0, 0, 2 / 8, 2 / 8, 1 / 8, 0]
    # EMPO's entropy filter: no two completions agree (the unanswered count as one cluster) -> 0 everywhere
    assert score(boxed("1", "2", "3", None), "cluster_share")["rewards"] == [0.0] * 4
    assert score(boxed("1", "2", None, None), "cluster_share")["rewards"] == [1 / 4, 1 / 4, 0, 0]


def test_random_reward_gives_the_same_coins_for_the_same_rollouts_and_ignores_the_answer():
    completions = boxed("5", "4", None, "5", "7", None, "5", "5")
    first = score(completions, "random_reward")
    assert first["rewards"] == score(completions, "random_reward")["rewards"] and not first["masked"]
    assert set(first["rewards"]) <= {0.0, 1.0} and first["reward_name"] == "random_reward"
    assert first["rewards"] == list(RandomReward().coins(PROBLEM.id, tuple(completions)))
    with pytest.raises(ValueError, match="salt must be 1 to 64 bytes"):
        RandomReward(salt="")


def test_random_reward_coins_are_fair_and_change_with_the_completions():
    reward, other = RandomReward(), RandomReward(salt="another salt")
    groups = [tuple(f"{g} + {i} = \\boxed{{{(g * 7 + i) % 11}}}" for i in range(8)) for g in range(1500)]
    coins = [reward.coins(f"p{g % 50}", group) for g, group in enumerate(groups)]
    flat = [c for group in coins for c in group]
    assert abs(sum(flat) / len(flat) - 0.5) < 0.02                      # 12,000 coins: sd 0.0046
    for i in range(8):                                                   # every position is fair on its own
        assert abs(sum(group[i] for group in coins) / len(coins) - 0.5) < 0.05
    # one completion changed -> the whole group's coins are drawn afresh (about half of them flip)
    changed = [reward.coins(f"p{g % 50}", (group[0] + " ", *group[1:])) for g, group in enumerate(groups)]
    flips = sum(a != b for x, y in zip(coins, changed) for a, b in zip(x, y)) / len(flat)
    assert abs(flips - 0.5) < 0.02
    # the same text at every position of a group: the position draws its own coin (all 8 alike: p = 2/256)
    alike = [len(set(reward.coins(f"p{g}", ("\\boxed{5}",) * 8))) == 1 for g in range(400)]
    assert sum(alike) / len(alike) < 0.05
    # another problem, another salt: fresh coins
    for variant in ([reward.coins(f"q{g % 50}", group) for g, group in enumerate(groups)],
                    [other.coins(f"p{g % 50}", group) for g, group in enumerate(groups)]):
        differ = sum(a != b for x, y in zip(coins, variant) for a, b in zip(x, y)) / len(flat)
        assert abs(differ - 0.5) < 0.02
    # independent of the answer: the parsed and the unanswered are each paid half the time
    groups = [tuple(boxed(*(None if (g + i) % 3 == 0 else str(i) for i in range(8)))) for g in range(600)]
    rows = [(group, reward.coins(f"p{g}", group)) for g, group in enumerate(groups)]
    for parsed in (True, False):
        paid = [c for group, cs in rows for text, c in zip(group, cs) if ("boxed" in text) == parsed]
        assert abs(sum(paid) / len(paid) - 0.5) < 0.04


def test_random_reward_coins_do_not_depend_on_the_process():
    """No hidden state: another interpreter, with another `PYTHONHASHSEED`, draws the same coins."""
    completions = tuple(boxed("5", "4", None, "5", "7", None, "5", "5"))
    code = ("import json, sys; from cuma_env.control_rewards import RandomReward; "
            "print(json.dumps(RandomReward().coins(sys.argv[1], tuple(json.loads(sys.argv[2])))))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, PROBLEM.id, json.dumps(completions)], env=env,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert json.loads(out) == list(RandomReward().coins(PROBLEM.id, completions))


def test_the_controls_are_registered_label_free_and_never_read_the_answer():
    from cuma_env.rewards import REWARDS, reward_uses_labels

    assert set(CONTROLS) <= set(REWARDS)
    assert not any(reward_uses_labels(name) for name in CONTROLS)
    unlabelled = Problem(id=PROBLEM.id, prompt=PROBLEM.prompt, level=1, source="t")  # no reference answer
    for name in CONTROLS:
        completions = boxed("5", "4", None, "5")
        assert score(completions, name)["rewards"] == score(completions, name, problem=unlabelled)["rewards"]


@pytest.mark.parametrize("reward", CONTROLS)
def test_one_gym_episode_with_each_control(reward):
    env = gym.make("CuMa-Arith-v0", group_size=4, reward=reward)
    prompt, info = env.reset(seed=0)
    group = ["\\boxed{3}", "\\boxed{3}", "I do not know", "\\boxed{4}"]
    _, mean, terminated, truncated, step_info = env.step(group)
    assert terminated and not truncated and step_info["reward_name"] == reward and not step_info["masked"]
    assert mean == pytest.approx(sum(step_info["rewards"]) / 4) and step_info["problem_id"] == info["problem_id"]
    expected = {"format_only": [1, 1, 0, 1], "cluster_share": [0.5, 0.5, 0, 0.25],
                "random_reward": list(RandomReward().coins(info["problem_id"], tuple(group)))}[reward]
    assert step_info["rewards"] == expected


def test_the_control_presets_are_uniform_unmasked_and_probe_free():
    from agents.config import load_config
    from agents.experiments.reproduce import Budget, method_config

    for family, rewards in (("tiny", CONTROLS), ("smollm2", CONTROLS)):
        for method, reward in zip(("random_reward", "format_only", "empo"), rewards):
            config = method_config(method, 0, Budget(steps=4), family=family)
            assert config.env.reward == reward and config.curriculum.schedule == "uniform"
            assert not config.curriculum.probe and config.curriculum.options == {}
            assert config.name == method and not config.env.empty_votes
            assert config.model.path == ("tiny" if family == "tiny" else "smollm2-135m")
    assert load_config(preset="smollm2-format-only").env.last_number_fallback is False  # boxed answers only


@pytest.mark.slow
def test_one_training_step_of_the_random_reward_preset(tiny_base_dir):
    """The real agent (rollout, group vote in the replay buffer, GRPO learner) trains on the coins."""
    import torch

    from agents.checkpoint import seed_everything
    from agents.config import load_config
    from agents.learner import Learner
    from agents.policy import build_policy
    from agents.rollout import Rollout

    config = load_config(preset="tiny-random-reward", overrides=[
        f"model.path={tiny_base_dir}", "rollout.prompts_per_step=4", "output.progress=false",
        "output.tensorboard=false"])
    seed_everything(config.seed)
    policy = build_policy(config.model, config.rollout, seed=config.seed)
    rollout = Rollout(config, policy)
    try:
        batch = rollout.collect()
    finally:
        rollout.shutdown()
    assert [i["reward_name"] for i in batch.infos] == ["random_reward"] * 4 and batch.kept_groups == 4
    assert not any(i["masked"] for i in batch.infos)
    responses = list(batch.data["text", "response"])
    ids = list(batch.data["problem_id"])
    rewards = batch.data["next", "reward"].reshape(-1).tolist()
    for g, info in enumerate(batch.infos):  # the buffer's rewards are the coins of the texts generated
        rows = slice(g * 8, (g + 1) * 8)
        assert rewards[rows] == info["rewards"] and set(ids[rows]) == {info["problem_id"]}
        assert info["rewards"] == list(RandomReward().coins(info["problem_id"], tuple(responses[rows])))
    learner = Learner(policy, config.train, config.rollout.group_size)
    before = {k: v.detach().clone() for k, v in policy.model.named_parameters()}
    stats = learner.step(batch.data)
    assert stats.trained_groups > 0 and torch.isfinite(torch.tensor(stats.loss))
    assert any(not torch.equal(before[k], v.detach()) for k, v in policy.model.named_parameters())
