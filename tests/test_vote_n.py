"""TTRL's N -> M shape (`rollout.vote_group_size`, agents/vote_subset.py) on the real tiny base: N completions are
sampled and voted on per prompt, M of them (a seeded random subset) reach the loss with the N-vote's rewards and
advantages normalised within the M; the curriculum hears the N-vote."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.llm import MCAdvantage, MCAdvantageSelector

from agents.checkpoint import latest_checkpoint, load_checkpoint, seed_everything
from agents.config import ConfigError, load_config
from agents.learner import Learner
from agents.policy import build_policy
from agents.rollout import Rollout
from agents.trainer import Trainer
from agents.vote_subset import VoteSubset
from cuma_env.torchrl.group_vote import group_advantage

N, M, P = 8, 4, 2


def vote_n_config(base_dir, *overrides, preset="tiny-ttrl"):
    return load_config(preset=preset, overrides=[f"model.path={base_dir}", f"rollout.prompts_per_step={P}",
                                                 f"rollout.group_size={M}", f"rollout.vote_group_size={N}",
                                                 "output.progress=false", "output.tensorboard=false", *overrides])


def collect_once(config):
    """One step of a fresh rollout: (batch, the vote's output handed to VoteSubset (cloned), the rows it kept)."""
    seed_everything(config.seed)
    rollout = Rollout(config, build_policy(config.model, config.rollout, seed=config.seed))
    seen = {}
    subset, draw, inv = rollout.subset, rollout.subset.draw, rollout.subset._inv_call

    def recording_inv(td):
        seen["voted"] = None if td is None else td.clone()
        return inv(td)

    def recording_draw(groups):
        seen["index"] = draw(groups)
        return seen["index"]

    subset._inv_call, subset.draw = recording_inv, recording_draw
    try:
        batch = rollout.collect()
    finally:
        rollout.shutdown()
    return batch, seen["voted"], seen["index"]


@pytest.fixture(scope="module")
def collected(tiny_base_dir):
    return collect_once(vote_n_config(tiny_base_dir))


def test_config_default_is_none_and_a_bad_vote_size_is_one_clear_error():
    assert load_config(preset="tiny-ttrl").rollout.vote_group_size is None
    with pytest.raises(ConfigError, match=r"^rollout.vote_group_size: .*>= rollout.group_size .*got N=4, M=8$"):
        load_config(preset="tiny-ttrl", overrides=["rollout.vote_group_size=4"])
    with pytest.raises(ConfigError, match=r"^rollout.vote_group_size: Ray workers"):
        load_config(preset="tiny-ttrl", overrides=["rollout.vote_group_size=16", "rollout.workers=2",
                                                   "rollout.prompts_per_step=16"])
    assert load_config(preset="tiny-ttrl-vote-n").rollout.vote_group_size == 32


def test_the_n_vote_rewards_the_m_rows_that_reach_the_loss(collected, tiny_base_dir):
    batch, voted, index = collected
    assert batch.extra["generated"] == P * N
    # the vote (and the curriculum, which heard these infos) saw all N; tiny-ttrl never masks, so every group is kept
    assert len(batch.infos) == P and all(i["group_size"] == N and len(i["answers"]) == N for i in batch.infos)
    assert voted.batch_size[0] == P * N and batch.kept_groups == P
    data = batch.data
    assert data.batch_size[0] == P * M
    local = (index % N).tolist()
    rewards = data.get(("next", "reward")).reshape(P, M)
    answers = data.get(("next", "answer")).tolist()
    for g, info in enumerate(batch.infos):
        assert rewards[g].tolist() == [info["rewards"][j] for j in local[g]]
        assert answers[g * M:(g + 1) * M] == [info["answers"][j] for j in local[g]]
        assert torch.equal(data.get("advantage").reshape(P, M)[g], group_advantage(rewards[g]))
    assert data.get("advantage").shape == (P * M, 1, 1)
    # M rows per prompt reach the loss: the learner groups them by M and keeps whole groups
    group_ids = data.get("group_id").reshape(P, M)
    assert bool((group_ids == group_ids[:, :1]).all()) and len(set(group_ids[:, 0].tolist())) == P
    config = vote_n_config(tiny_base_dir)
    kept = Learner(build_policy(config.model, config.rollout, seed=0), config.train, M).select(data)
    assert kept is None or kept.batch_size[0] % M == 0


def test_torchrls_mcadvantage_with_the_same_subset_gives_the_same_rows_and_advantages(collected):
    """What VoteSubset replaces (agents/vote_subset.py says why): MCAdvantage oversampling N candidates."""
    batch, voted, index = collected
    picks = iter((index % N).tolist())

    class Same(MCAdvantageSelector):
        def select(self, candidates, *, group_size, keep_return_bounds=None):
            return next(picks)

    reference = MCAdvantage(grpo_size=M, prompt_key="group_id", trajectory_return="sum", candidate_group_size=N,
                            candidate_selection_min_size=N, candidate_selector=Same())._inv_call(voted)
    assert reference.get("group_id").tolist() == batch.data.get("group_id").tolist()
    assert reference.get(("text", "response")).tolist() == batch.data.get(("text", "response")).tolist()
    assert torch.allclose(reference.get("advantage").reshape(-1), batch.data.get("advantage").reshape(-1))


def test_the_subset_is_reproducible_for_a_seed_and_resumes_from_its_state(collected, tiny_base_dir):
    first = VoteSubset(N, M, seed=0)
    assert torch.equal(first.draw(5), VoteSubset(N, M, seed=0).draw(5))
    assert not torch.equal(VoteSubset(N, M, seed=0).draw(5), VoteSubset(N, M, seed=1).draw(5))
    state = first.rng_state()
    after = first.draw(3)
    fresh = VoteSubset(N, M, seed=0)
    fresh.set_rng_state(state)
    assert torch.equal(fresh.draw(3), after)
    rows = first.draw(4)
    assert rows.shape == (4, M) and all(len(set(r)) == M for r in rows.tolist())
    assert bool(((rows // N) == torch.arange(4).unsqueeze(1)).all()) and bool((rows.diff(dim=1) > 0).all())
    # end to end: the same seed keeps the same rows of the same completions
    batch, _, index = collected
    again, _, index_again = collect_once(vote_n_config(tiny_base_dir))
    assert torch.equal(index, index_again)
    assert again.data.get(("text", "response")).tolist() == batch.data.get(("text", "response")).tolist()
    assert torch.equal(again.data.get("advantage"), batch.data.get("advantage"))


def test_a_masked_group_kept_with_zero_advantage_stays_zero():
    subset = VoteSubset(4, 2, seed=0)
    rows = TensorDict({("next", "reward"): torch.tensor([1.0, 0.0, 1.0, 0.0] * 2).view(8, 1, 1),
                       ("next", "masked"): torch.tensor([True] * 4 + [False] * 4).view(8, 1)}, batch_size=[8])
    out = subset.inv(rows)
    assert out.batch_size[0] == 4 and out.get("advantage")[:2].abs().sum() == 0
    assert subset._inv_call(None) is None  # what the buffer's Compose hands on when the vote dropped every group
    with pytest.raises(RuntimeError, match="whole voted groups of 4 rows"):
        subset.inv(rows[:6])


def test_one_training_step_with_the_preset(tiny_base_dir, tmp_path):
    """`tiny-ttrl-vote-n`, shrunk to one step of 2 prompts on one level: the trainer's metrics row counts the
    completions generated (P x N), and the subset's state goes into the checkpoint."""
    config = load_config(preset="tiny-ttrl-vote-n", overrides=[
        f"model.path={tiny_base_dir}", "rollout.prompts_per_step=2", "rollout.max_new_tokens=16", "train.steps=1",
        "env.levels=[1]", "eval.n_per_level=1", "eval.samples=1", "output.progress=false",
        "output.tensorboard=false"])
    trainer = Trainer.new(config, tmp_path / "run")
    trainer.build()
    rows = []
    log_step = trainer.outputs.log_step
    trainer.outputs.log_step = lambda row: (rows.append(dict(row)), log_step(row))
    assert trainer.run()["steps"] == 1 and len(rows) == 1
    assert rows[0]["generated"] == 2 * 32 and rows[0]["kept_groups"] == 2
    assert rows[0]["trained_groups"] <= 2 and 0.0 <= rows[0]["agreement"] <= 1.0
    saved = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert saved["stream"]["vote_subset"].dtype == torch.uint8
