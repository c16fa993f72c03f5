"""GroupVote: groups whose members arrive in separate batches are scored on the replay-buffer write path."""

from __future__ import annotations

import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchrl")
torch.set_num_threads(1)

from tensordict import NonTensorStack, TensorDict, lazy_stack  # noqa: E402
from torchrl.data import LazyStackStorage, ListStorage, ReplayBuffer  # noqa: E402
from torchrl.modules.llm import TransformersWrapper  # noqa: E402
from torchrl.objectives.llm import MCAdvantage  # noqa: E402

from cuma_env import EpisodeConfig, Problem, make_torchrl_env, score_group  # noqa: E402
from cuma_env.torchrl.group_vote import GroupVote, group_advantage  # noqa: E402

G = 4


@pytest.fixture
def tiny(tiny_random_model):
    model, tokenizer = tiny_random_model
    return model, tokenizer


def policy_for(model, tokenizer):
    return TransformersWrapper(model, tokenizer=tokenizer, input_mode="text", generate=True,
                               generate_kwargs={"max_new_tokens": 8, "do_sample": True})


def members(group_id, completions, problem_id="p", level=1, **extra):
    """A batch of single-step members as an LLM env + policy would write them (text mode)."""
    n = len(completions)
    td = TensorDict({"group_id": torch.full((n,), group_id), "level": torch.full((n,), level),
                     "next": TensorDict({"reward": torch.zeros(n, 1, 1), "done": torch.ones(n, 1, dtype=torch.bool)},
                                        batch_size=[n])}, batch_size=[n])
    td.set("problem_id", NonTensorStack(*[problem_id] * n))
    td.set("query", NonTensorStack(*[f"question {problem_id}"] * n))
    td.set(("text", "response"), NonTensorStack(*completions))
    for key, value in extra.items():
        td.set(key, value)
    return td


class RecordingStream:
    def __init__(self, problems=()):
        self.problems, self.observed = list(problems), []

    def next_problem(self):
        return self.problems.pop(0)

    def observe(self, info):
        self.observed.append(info)


def make_rb(transform):
    return ReplayBuffer(storage=ListStorage(100), transform=transform, batch_size=G)


def test_group_split_over_three_batches_is_written_once_complete():
    stream = RecordingStream()
    vote = GroupVote(G, problem_stream=stream)
    rb = make_rb(vote)
    a = ["\\boxed{3}", "\\boxed{3}", "\\boxed{4}", "nothing"]
    b = ["\\boxed{1}", "\\boxed{2}", "\\boxed{1}", "\\boxed{1}"]
    rb.extend(members(1, a[:1], "pa"))
    rb.extend(lazy_stack([members(1, a[1:3], "pa")[0], members(1, a[1:3], "pa")[1]]))
    rb.extend(members(2, b[:2], "pb"))
    assert len(rb) == 0 and vote.pending_groups == 2 and vote.pending_members == 5 and not stream.observed
    rb.extend(torch.cat([members(1, a[3:], "pa"), members(2, b[2:], "pb")]))
    assert len(rb) == 2 * G and vote.pending_members == 0 and len(stream.observed) == 2
    written = rb[:]
    config = EpisodeConfig(group_size=G)
    for gid, completions, pid in ((1, a, "pa"), (2, b, "pb")):
        rows = written[written["group_id"] == gid]
        expected = score_group(Problem(id=pid, prompt="q", level=1, source="unknown"), completions, config)
        assert rows["next", "reward"].shape == (G, 1, 1) and rows["advantage"].shape == (G, 1, 1)
        assert rows["next", "reward"].view(-1).tolist() == expected["rewards"]
        adv = rows["advantage"].view(-1)
        assert torch.allclose(adv, group_advantage(torch.tensor(expected["rewards"])))
        assert abs(float(adv.mean())) < 1e-6 and abs(float(adv.std()) - 1.0) < 1e-5
        assert rows["next", "masked"].view(-1).tolist() == [False] * G
        assert rows.get(("next", "answer")).tolist() == expected["answers"]
    assert [i["problem_id"] for i in stream.observed] == ["pa", "pb"]


def test_masked_groups_are_dropped_or_kept_with_zero_advantage():
    masked = ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "none"]
    dropping, keeping = GroupVote(G, min_votes=2), GroupVote(G, min_votes=2, drop_masked=False)
    rb_drop, rb_keep = make_rb(dropping), make_rb(keeping)
    for rb in (rb_drop, rb_keep):
        rb.extend(members(7, masked[:2]))
        rb.extend(members(7, masked[2:]))
    assert len(rb_drop) == 0 and dropping.groups_dropped == 1 and dropping.last_info["masked"]
    kept = rb_keep[:]
    assert len(rb_keep) == G and kept["next", "masked"].all()
    assert kept["advantage"].shape == (G, 1, 1) and (kept["advantage"] == 0).all()
    uniform = GroupVote(G, drop_uniform=True)
    rb = make_rb(uniform)
    rb.extend(members(8, ["\\boxed{5}"] * G))
    assert len(rb) == 0 and uniform.groups_dropped == 1


def test_advantage_equals_mcadvantage_after_the_vote():
    completions = ["\\boxed{2}", "\\boxed{2}", "\\boxed{9}", "\\boxed{2}"]
    ours = make_rb(GroupVote(G))
    ours.extend(members(3, completions[:3]))
    ours.extend(members(3, completions[3:]))
    # Chaining by hand: torchrl's Compose hands a queueing transform's None on to the next transform,
    # which fails (MCAdvantage: 'NoneType' has no attribute 'ndim'), so Compose(MCAdvantage, GroupVote) breaks.
    vote = GroupVote(G, advantage_key=None)
    mc = MCAdvantage(grpo_size=G, prompt_key="group_id", trajectory_return="sum")
    assert vote.inv(members(3, completions[:3])) is None
    theirs = mc.inv(vote.inv(members(3, completions[3:])))
    assert len(ours) == theirs.shape[0] == G
    torch.testing.assert_close(ours[:]["advantage"], theirs["advantage"])


def test_self_certainty_rewards_from_member_token_stats():
    vote = GroupVote(G, reward="self_certainty")
    rb = make_rb(vote)
    stats = torch.tensor([0.5, 1.5, 2.5, 3.5])
    rb.extend(members(4, ["a", "b"], token_stats=stats[:2]))
    rb.extend(members(4, ["c", "d"], token_stats=stats[2:]))
    assert rb[:]["next", "reward"].view(-1).tolist() == stats.tolist()


def test_env_in_buffer_mode_with_transformers_wrapper(tiny):
    model, tokenizer = tiny
    problems = [Problem(id=f"p{i}", prompt=f"What is {i} + 1?", level=1, source="test", answer=str(i + 1))
                for i in range(4)]
    stream = RecordingStream(problems)
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, batch_size=2, tokenizer=tokenizer, problem_stream=stream,
                           min_votes=1)
    assert env.scoring == "buffer"
    vote = env.group_vote(drop_masked=False)
    rb = ReplayBuffer(storage=LazyStackStorage(100), transform=vote)
    policy = policy_for(model, tokenizer)
    completions = []
    assert vote.problems is env.episode.pending and vote.config is env.episode.config  # the public accessor
    for half in range(2):
        td = env.step(policy(env.reset()))
        assert td["next", "done"].all() and not {"reward", "masked", "answer"} & set(td["next"].keys())  # GroupVote's
        completions += td.get(("text", "response")).tolist()
        rb.extend(td)
        assert len(rb) == (0 if half == 0 else G)
        assert len(stream.observed) == half
    written = rb[:]
    assert set(written["group_id"].tolist()) == {int(td["group_id"][0])}
    expected = score_group(problems[0], completions, EpisodeConfig(group_size=G, min_votes=1))
    assert stream.observed == [expected] and vote.last_info == expected  # the real Problem (with its answer)
    assert written["next", "reward"].view(-1).tolist() == expected["rewards"]
    assert written.get(("next", "answer")).tolist() == expected["answers"]
    assert torch.allclose(written["advantage"].view(-1),
                          group_advantage(torch.tensor(expected["rewards"]), masked=expected["masked"]))


def test_llm_collector_writes_only_whole_groups(tiny):
    from torchrl.collectors.llm import LLMCollector

    model, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, batch_size=2, tokenizer=tokenizer, seed=0)
    vote = env.group_vote(drop_masked=False)
    rb = ReplayBuffer(storage=LazyStackStorage(100), transform=vote)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gotcha 8: the collector's auto_register_policy_transforms warning
        collector = LLMCollector(env, policy=policy_for(model, tokenizer), dialog_turns_per_batch=2,
                                 replay_buffer=rb, total_dialog_turns=12)
        for _ in collector:
            assert len(rb) % G == 0
    # 6 steps of 2: gotcha 7 strands the first group's first half (the collector's construction reset is never
    # stepped), groups 2 and 3 complete, the last step leaves half of group 4 waiting
    assert len(rb) == 2 * G and vote.pending_groups == 2 and vote.pending_members == G
    data = rb[:]
    for gid in set(data["group_id"].tolist()):
        rows = data[data["group_id"] == gid]
        assert rows.shape == (G,) and len(set(rows.get("problem_id").tolist())) == 1
        assert rows["advantage"].shape == (G, 1, 1)
    vote.clear()
    assert vote.pending_members == 0


def test_bad_arguments(tiny):
    _, tokenizer = tiny
    with pytest.raises(ValueError, match="scoring='buffer'"):
        make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer).group_vote()
    with pytest.raises(ValueError, match="group_size"):
        GroupVote(0)
    with pytest.raises(TypeError, match="problems"):
        GroupVote(G, problems=3)
    with pytest.raises(KeyError, match="group_key"):
        make_rb(GroupVote(G, group_key="nope")).extend(members(1, ["a"]))


def test_buffer_scoring_with_whole_group_batches(tiny):
    _, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, scoring="buffer", levels=[1])
    rb = ReplayBuffer(storage=LazyStackStorage(100), transform=env.group_vote())
    td = env.reset()
    problem = env.problem_for(td["group_id"][0])
    completions = [f"\\boxed{{{problem.answer}}}"] * 3 + ["\\boxed{-1}"]
    td.set(("text", "response"), NonTensorStack(*completions))
    td = env.step(td)
    assert "reward" not in td["next"].keys() and env.last_info is None  # the env left the vote to the buffer
    rb.extend(td)
    assert rb[:]["next", "reward"].view(-1).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert env.problem_for(td["group_id"][0]) is None  # handed over and forgotten


@pytest.mark.parametrize("lazy", [False, True])
def test_copy_leaves_the_input_alone_and_copy_false_writes_the_same_rows(lazy):
    """Default: kept rows are copied out (the caller's batch is untouched); copy=False selects them in place."""
    a = ["\\boxed{3}", "\\boxed{3}", "\\boxed{4}", "nothing"]
    masked = ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "none"]

    def batch():
        td = torch.cat([members(1, a, "pa"), members(2, masked, "pb")])
        return lazy_stack(list(td.unbind(0))) if lazy else td

    written = {}
    for copy in (True, False):
        source = batch()
        rb = make_rb(GroupVote(G, min_votes=2, copy=copy))
        rb.extend(source)
        written[copy] = rb[:]
        assert len(rb) == G and written[copy]["group_id"].tolist() == [1] * G
        if copy:
            assert not source["next", "reward"].any() and ("next", "answer") not in source.keys(True)
    for key in (("next", "reward"), ("next", "masked"), "advantage"):
        assert torch.equal(written[True][key], written[False][key])
    assert written[True].get(("next", "answer")).tolist() == written[False].get(("next", "answer")).tolist()
    assert written[True].get(("text", "response")).tolist() == a


def count_calls(monkeypatch, function):
    """Wraps `function` wherever a loaded module of the project binds it; returns the list of its calls' first
    arguments (the completions, for `extract_answer`)."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0] if args else None)
        return function(*args, **kwargs)

    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "").split(".")[0] in ("cuma_env", "curricula", "agents")
                and getattr(module, function.__name__, None) is function):
            monkeypatch.setattr(module, function.__name__, counted)
    return calls


@pytest.mark.parametrize("scoring", ["buffer", "env"])
def test_each_completion_is_extracted_and_voted_once_per_step(tiny, monkeypatch, scoring):
    """Env + GroupVote on a real batch: one extraction per completion, one vote per group, in either mode."""
    from cuma_env.answers import extract_answer
    from cuma_env.voting import majority_vote

    model, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, batch_size=2 * G if scoring == "buffer" else G,
                           tokenizer=tokenizer, seed=0, scoring=scoring)
    rb = ReplayBuffer(storage=LazyStackStorage(100), transform=env.group_vote(drop_masked=False)) \
        if scoring == "buffer" else None
    td = policy_for(model, tokenizer)(env.reset())
    extracted, voted = count_calls(monkeypatch, extract_answer), count_calls(monkeypatch, majority_vote)
    td = env.step(td)
    if rb is not None:
        rb.extend(td)
        assert len(rb) == 2 * G
    completions = td.get(("text", "response")).tolist()
    assert sorted(extracted) == sorted(completions) and len(voted) == len(completions) // G


def test_the_agents_rollout_extracts_each_completion_once(tiny_base_dir, monkeypatch):
    """One real collector step of the agent's rollout path (OneStepCollector, the env with scoring="buffer",
    GroupVote on the buffer's write path): as many extractions as completions, one vote per group."""
    from agents.checkpoint import seed_everything
    from agents.config import load_config
    from agents.policy import build_policy
    from agents.rollout import Rollout
    from cuma_env.answers import extract_answer
    from cuma_env.voting import majority_vote

    config = load_config(preset="tiny-ttrl", overrides=[f"model.path={tiny_base_dir}", "rollout.prompts_per_step=3",
                                                         "output.progress=false", "curriculum.probe=false"])
    seed_everything(0)
    rollout = Rollout(config, build_policy(config.model, config.rollout, seed=0))
    try:
        assert rollout.env.scoring == "buffer"
        extracted, voted = count_calls(monkeypatch, extract_answer), count_calls(monkeypatch, majority_vote)
        batch = rollout.collect()
    finally:
        rollout.shutdown()
    groups, size = config.rollout.prompts_per_step, config.rollout.group_size
    assert len(batch.infos) == groups and len(voted) == groups and len(extracted) == groups * size
    # the calls were the completions of the voted groups, in order
    assert [a for info in batch.infos for a in info["answers"]] == [extract_answer(c) for c in extracted]
