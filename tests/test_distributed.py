"""Scale-out on Ray (`rollout.workers > 1`, agents.distributed): the feed, the config, and real runs on a local
Ray with 2 workers and the tiny base (sync, async, a worker killed mid-run), each leaving no Ray process."""

from __future__ import annotations

import importlib.util
import queue

import pytest

from agents.config import ConfigError, load_config
from agents.distributed.feed import PLACEHOLDER, FeedStream, batch_seed, post
from agents.rollout import RecordingStream
from cuma_env.arithmetic import ArithmeticSource

SMALL = ["rollout.prompts_per_step=4", "eval.n_per_level=8", "eval.samples=2", "output.progress=false",
         "output.tensorboard=false", "eval.every=0"]
FAST_GATE = ["curriculum.options.min_steps=1", "curriculum.options.window=4"]  # promotions within a few steps


def ray_config(base_dir, *overrides):
    return load_config(preset="tiny-cuma-gated", overrides=[f"model.path={base_dir}", *SMALL, "rollout.workers=2",
                                                             *overrides])


# --- without Ray ---------------------------------------------------------------------------------
def test_the_feed_hands_each_worker_whole_posted_batches_without_labels():
    """The learner's posts, through the same queue interface as Ray's (`put`, `get_nowait`)."""
    source = ArithmeticSource("train")
    problems = [source.get(2, i) for i in range(4)]
    posts = [queue.Queue(), queue.Queue()]
    stream = FeedStream(posts[1], worker=1, per_batch=2)
    assert [stream.next_problem() for _ in range(2)] == [PLACEHOLDER, PLACEHOLDER]  # nothing posted yet
    post(posts[1], problems[2:], seed=batch_seed(0, 1, 1))
    post(posts[0], problems[:2], seed=batch_seed(0, 1, 0))
    got = [stream.next_problem() for _ in range(2)]
    assert [p.id for p in got] == [p.id for p in problems[2:]]
    assert all(p.answer is None for p in got) and all(p.answer is not None for p in problems)
    assert (posts[0].qsize(), posts[1].qsize(), stream.placeholders) == (1, 0, 2)


def test_taking_a_batch_seeds_its_sampling():
    import torch

    source = ArithmeticSource("train")
    posts = queue.Queue()
    draws = []
    for _ in range(2):
        post(posts, [source.get(1, 0)], seed=batch_seed(3, 7, 0))
        FeedStream(posts, worker=0, per_batch=1).next_problem()
        draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[1])
    assert len({batch_seed(0, b, w) for b in range(50) for w in range(8)}) == 400


def test_a_feed_batch_of_the_wrong_size_is_refused():
    posts = queue.Queue()
    post(posts, [ArithmeticSource("train").get(1, 0)], seed=0)
    with pytest.raises(ValueError, match="posted 1 problems"):
        FeedStream(posts, worker=0, per_batch=2).next_problem()


def test_a_resumed_stream_redraws_every_pending_batch():
    """Async workers draw several batches ahead of the votes; a restore redraws them all, then continues."""
    from curricula import CurriculumStream

    def make():
        return RecordingStream(CurriculumStream({"name": "agreement_gated", "min_steps": 1, "window": 2},
                                                ArithmeticSource("train"), seed=5), draws_per_batch=2)

    def info(problem):
        return {"level": problem.level, "problem_id": problem.id, "agreement": 1.0, "masked": False,
                "majority": problem.id, "majority_count": 8, "group_size": 8, "parse_rate": 1.0}

    def run(stream, batches, ahead, pending=None):
        pending = pending if pending is not None else [[stream.next_problem() for _ in range(2)] for _ in range(ahead)]
        voted = []
        for _ in range(batches):
            pending.append([stream.next_problem() for _ in range(2)])
            for p in pending[0]:
                stream.observe(info(p))
            voted.append([p.id for p in pending.pop(0)])
        return voted, pending

    full, _ = run(make(), 8, ahead=3)
    first = make()
    head, _ = run(first, 4, ahead=3)
    state = first.state_dict()
    assert state["pending"] == 3
    second = make()
    second.load_state_dict(state)
    tail, _ = run(second, 4, ahead=3)
    assert head + tail == full


@pytest.mark.parametrize("overrides, message", [
    (["rollout.workers=3"], "multiple of rollout.workers=3"),
    (["rollout.workers=2", "rollout.mode=fast"], "rollout.mode"),
    (["rollout.workers=2", "rollout.mode=async", "rollout.max_staleness=0"], "rollout.max_staleness"),
    (["ray.num_cpus_per_worker=0"], "ray.num_cpus_per_worker"),
])
def test_bad_scale_out_settings_fail_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(preset="tiny-cuma-gated", overrides=overrides)


def test_ray_address_may_change_on_resume_and_the_cli_flag_sets_it():
    from agents.config import RESUMABLE_KEYS

    assert "ray.address" in RESUMABLE_KEYS
    assert load_config(preset="tiny-cuma-gated", overrides=["ray.address=auto"]).ray.address == "auto"


# --- on a local Ray -------------------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="the [ray] extra is not installed")


def assert_voted_whole(batch, prompts, group_size):
    """Every group of the batch has all its members, all on one problem, in the order of its infos."""
    from cuma_env.torchrl.layout import as_str_list

    assert len(batch.infos) == prompts
    groups = batch.data.get("group_id").reshape(-1).tolist()
    problem_ids = as_str_list(batch.data.get("problem_id"), len(groups))
    assert len(groups) == prompts * group_size
    for g in set(groups):
        members = [i for i, x in enumerate(groups) if x == g]
        assert len(members) == group_size and len({problem_ids[i] for i in members}) == 1
    assert [problem_ids[i * group_size] for i in range(prompts)] == [info["problem_id"] for info in batch.infos]


@pytest.mark.slow
@needs_ray
def test_async_workers_vote_whole_groups_sampled_one_step_behind(tiny_base_dir, no_ray_left):
    """2 workers, async with K=1, 3 batches: groups voted whole; batch k (k >= 1) was sampled by the weights of
    step k-1, one optimizer step behind the step that trains on it."""
    from agents.checkpoint import seed_everything
    from agents.distributed import RayRollout
    from agents.policy import build_policy

    config = ray_config(tiny_base_dir, "rollout.mode=async", "rollout.max_staleness=1",
                        "train.masked_groups=zero_advantage")
    seed_everything(config.seed)
    policy = build_policy(config.model, config.rollout, seed=config.seed)
    rollout = RayRollout(config, policy)
    G, P = config.rollout.group_size, config.rollout.prompts_per_step
    batches = []
    try:
        for _ in range(3):
            batches.append(rollout.collect())
            rollout.weights_updated()
    finally:
        rollout.shutdown()
    for k, batch in enumerate(batches):
        assert_voted_whole(batch, P, G)
        assert batch.extra["staleness"] == (0.0 if k == 0 else 1.0)
        assert set(batch.data.get("policy_version").reshape(-1).tolist()) == {max(0, k - 1)}


@pytest.mark.slow
@needs_ray
def test_sync_workers_vote_whole_groups_and_decide_as_the_single_process_agent(tiny_base_dir, no_ray_left):
    """2 workers, 3 batches. Every group is voted whole (all G members, one problem), and replaying the same
    completions through the single-process order (batch k+1 drawn before batch k is voted) gives the same
    draws, rewards, masks and curriculum decisions, probes included."""
    from agents.checkpoint import seed_everything
    from agents.distributed import RayRollout
    from agents.policy import build_policy
    from agents.rollout import make_probe
    from agents.train_pool import training_source
    from cuma_env.episode import EpisodeConfig, score_group
    from cuma_env.rewards import make_reward
    from cuma_env.torchrl.layout import read_responses
    from curricula import CurriculumStream

    config = ray_config(tiny_base_dir, *FAST_GATE, "train.masked_groups=zero_advantage")
    seed_everything(config.seed)
    policy = build_policy(config.model, config.rollout, seed=config.seed)
    rollout = RayRollout(config, policy)
    G, P = config.rollout.group_size, config.rollout.prompts_per_step
    batches, levels = [], []
    try:
        for _ in range(3):
            batch = rollout.collect()
            rollout.weights_updated()  # what the trainer does after its optimizer step (here: none)
            levels.append(rollout.summary()["level"])
            batches.append(batch)
    finally:
        rollout.shutdown()
    for k, batch in enumerate(batches):
        assert batch.extra["staleness"] == 0.0
        assert_voted_whole(batch, P, G)
        assert batch.data.get("policy_version").reshape(-1).tolist() == [k] * (P * G)  # sync: the latest weights

    # the single-process order, on the same completions (its own curriculum, vote and probe function)
    seed_everything(config.seed)
    e = config.env
    stream = RecordingStream(CurriculumStream({"name": config.curriculum.schedule, **config.curriculum.options},
                                              training_source(e), seed=config.seed, probe=make_probe(policy, config)),
                             P)
    episode = EpisodeConfig(group_size=G, min_votes=e.min_votes, reward=e.reward, empty_votes=e.empty_votes)
    reward = make_reward(e.reward)
    pending = [stream.next_problem() for _ in range(P)]
    for k, batch in enumerate(batches):
        following = [stream.next_problem() for _ in range(P)]  # the collector's reset after the step
        texts = read_responses(batch.data)
        for i, problem in enumerate(pending):
            info = score_group(problem, texts[i * G:(i + 1) * G], episode, reward)
            stream.observe(info)
            ray_info = batch.infos[i]
            assert info["problem_id"] == ray_info["problem_id"]
            assert (info["rewards"], info["masked"], info["majority"]) == \
                (ray_info["rewards"], ray_info["masked"], ray_info["majority"])
        assert stream.stream.summary()["level"] == levels[k]
        pending = following
    assert levels[-1] > 1  # the curriculum did move, so its decisions were compared


@pytest.mark.slow
@needs_ray
def test_cuma_train_with_async_workers_writes_the_usual_run(tiny_base_dir, tmp_path, no_ray_left):
    from agents.cli import main
    from agents.run_outputs import read_csv

    out = tmp_path / "async"
    code = main(["train", "--out", str(out), f"model.path={tiny_base_dir}", *SMALL, "train.steps=3",
                 "rollout.workers=2", "rollout.mode=async", "rollout.max_staleness=1"])
    assert code == 0
    assert {"config.yaml", "metrics.csv", "eval.csv", "summary.json", "report.png", "model"} <= \
        {p.name for p in out.iterdir()}
    rows = read_csv(out / "metrics.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [float(r["staleness"]) for r in rows] == [0.0, 1.0, 1.0]  # the first batch has no older weights
    assert all(float(r["stale_dropped"]) == 0 for r in rows)


@pytest.mark.slow
@needs_ray
def test_a_killed_worker_stops_the_run_at_its_last_step_and_the_resume_loses_nothing(tiny_base_dir, tmp_path,
                                                                                    no_ray_left):
    """Sync mode, 4 steps; a worker is killed before step 3. The run saves step 2 as it stood and stops with one
    line; the resumed run's steps 3-4 are the uninterrupted run's, number for number."""
    ray = no_ray_left
    from agents.run_outputs import TIME_COLUMNS, read_csv
    from agents.trainer import RunStopped, Trainer

    config = ray_config(tiny_base_dir, *FAST_GATE, "train.steps=4", "output.checkpoint_every=50")
    Trainer.new(config, tmp_path / "straight").run()

    trainer = Trainer.new(config, tmp_path / "killed")
    trainer.build()
    collect = trainer.rollout.collect

    def kill_before_step_3():
        if trainer.step == 2:
            ray.kill(trainer.rollout.collectors[1]._collector)
        return collect()

    trainer.rollout.collect = kill_before_step_3
    with pytest.raises(RunStopped, match="checkpoint saved at step 2.*cuma train --resume"):
        trainer.run()
    assert not ray.is_initialized()
    resumed = Trainer.resume(tmp_path / "killed")
    assert resumed.run()["steps"] == 4

    def numbers(run):
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_csv(tmp_path / run / "metrics.csv")]

    assert numbers("killed") == numbers("straight")
