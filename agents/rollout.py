"""Rollouts: TorchRL's `LLMCollector` over the CuMa TorchRL env, groups scored on the replay-buffer write path.

One call of `Rollout.collect()` gives one optimizer step's data: `prompts_per_step` groups of `group_size`
responses. The env batch holds all of them (B = P x G, so one `generate` call samples the whole step), the
collector writes them into a replay buffer whose write transform is `cuma_env.torchrl.group_vote.GroupVote`: it
votes per group, tells the curriculum (`observe`), writes rewards and group-normalised advantages, and drops
masked groups (option: keep them with zero advantage). The env (`scoring="buffer"`) leaves every response
unread, so each completion is extracted and voted once, by the vote. For `self_certainty` the collector's
`postproc` adds each response's self-certainty before the vote.

With `rollout.vote_group_size: N` (TTRL's shape, `agents.vote_subset`) each prompt gets N responses instead
(B = P x N), the vote and the curriculum see all N (probes too sample N), and `VoteSubset`, after the vote on
the write path, keeps G = `rollout.group_size` of each group with advantages normalised within them. Every
batch reports the completions it generated (`extra["generated"]`: P x N, or P x G without a vote size).

Workarounds (TorchRL 0.14 gotchas, numbered as in docs/torchrl-gotchas.md):
- gotcha 7: the collector resets the env at construction, and that batch is never stepped. The stream's
  state is saved before the collector is built and restored after, so no problem is lost.
- gotcha 8: the `auto_register_policy_transforms` warning is filtered.
- gotcha 15: `ReplayBuffer.extend` runs its transforms through `Transform.inv`, which shallow-copies the lazily
  stacked batch first; the collector's batch is fresh and never read again, so the buffer's write path is an
  `InPlaceCompose(vote, handover=True)` (`cuma_env.torchrl.fast_paths`, the same class as the env's).
- gotcha 17: `LLMCollector` clones every env step's output and carries it over into the next reset, member by
  member; one single-turn step fills our batch, so `OneStepCollector` (`cuma_env.torchrl.fast_paths`) skips both.
- gotcha 18: the generator (`cuma_env.torchrl.fast_paths.PaddedTransformersWrapper`, built by `agents.policy`)
  builds its padded outputs in one dense TensorDict, where TorchRL's wrapper splits them member by member.
- gotcha 1: the generator's `log_probs.full` is not needed: one optimizer step per batch is on-policy, so the
  learner takes the old log-probs from its own forward (see `agents.learner`).
- The collector pipelines: after stepping batch k it resets the env, drawing batch k+1's problems *before*
  batch k is voted on. `RecordingStream` therefore snapshots the stream at every batch boundary; a checkpoint
  stores the snapshot before batch k+1 was drawn ("pre") and the state now ("post"). A resumed run loads
  "pre", redraws batch k+1 exactly, then loads "post": the same problems as the uninterrupted run.

Probes (`make_probe`): the curriculum's probe hook samples a group per problem of another level with the
current policy at the training temperature, without training, and returns `score_group` infos.

The episode's knobs (`episode_settings`), the vote with its replay buffer (`vote_buffer`) and the probes are
assembled here once, for this rollout and the Ray one (`agents.distributed`, which builds on this module). The
trainer picks between the two, so this module never imports the Ray layer.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.config import Config
from agents.policy import Policy, render_prompts
from agents.vote_subset import VoteSubset
from cuma_env.episode import EpisodeConfig, probe_hook
from cuma_env.problems import Problem
from cuma_env.torchrl.fast_paths import InPlaceCompose, OneStepCollector


class RecordingStream:
    """A `ProblemStream` proxy: records scored groups' infos and makes the pipelined draws resumable.

    Draws run ahead of votes (the collector draws batch k+1 before batch k is voted; async Ray workers draw
    further ahead), so a checkpoint stores the stream's state from before the oldest batch not yet voted
    ("pre"), the state now ("post") and how many batches are pending: a resumed run redraws those batches
    from "pre", exactly, and then continues from "post".
    """

    def __init__(self, stream: Any, draws_per_batch: int):
        self.stream = stream
        self.draws_per_batch = int(draws_per_batch)
        self.infos: list[dict[str, Any]] = []
        self.draws = 0
        self.observed = 0
        self.snapshots: deque[dict[str, Any]] = deque()  # the state before each batch drawn and not yet voted
        self._post_after_draws: tuple[int, dict[str, Any]] | None = None

    # --- ProblemStream -------------------------------------------------------------------------
    def next_problem(self) -> Problem:
        if self.draws % self.draws_per_batch == 0:
            self.snapshots.append(self.stream.state_dict())
        problem = self.stream.next_problem()
        self.draws += 1
        if self._post_after_draws is not None and self.draws >= self._post_after_draws[0]:
            self.stream.load_state_dict(self._post_after_draws[1])
            self._post_after_draws = None
        return problem

    def observe(self, info: Mapping[str, Any]) -> None:
        self.infos.append(dict(info))
        self.stream.observe(info)
        self.observed += 1
        if self.observed % self.draws_per_batch == 0 and self.snapshots:
            self.snapshots.popleft()  # a whole batch voted

    # --- bookkeeping ---------------------------------------------------------------------------
    def pop_infos(self) -> list[dict[str, Any]]:
        infos, self.infos = self.infos, []
        return infos

    def state_dict(self) -> dict[str, Any]:
        """"pre": before the oldest pending batch was drawn; "post": now; "pending": batches drawn, not voted."""
        return {"pre": self.snapshots[0] if self.snapshots else None, "post": self.stream.state_dict(),
                "pending": len(self.snapshots)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore for a resume: the pending batches' draws replay from "pre", then "post" takes over."""
        self.infos, self.draws, self.observed, self.snapshots = [], 0, 0, deque()
        if state.get("pre") is None:  # nothing was pending
            self.stream.load_state_dict(state["post"])
            return
        self.stream.load_state_dict(state["pre"])
        self._post_after_draws = (int(state.get("pending", 1)) * self.draws_per_batch, state["post"])

    def reset_to(self, state: Mapping[str, Any]) -> None:
        """Back to a plain stream state (e.g. the initial one), counters cleared."""
        self.stream.load_state_dict(state)
        self.infos, self.draws, self.observed, self.snapshots = [], 0, 0, deque()
        self._post_after_draws = None


class WorkerLost(RuntimeError):
    """A rollout worker died (`agents.distributed`); the trainer saves its last finished step."""


@dataclass
class RolloutBatch:
    data: Any                       # kept members (TensorDict, batch = kept groups x G) or None
    infos: list[dict[str, Any]]     # score_group info of every group voted this step (kept or not)
    kept_groups: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


class Rollout:
    """Env + curriculum stream + collector + group-vote replay buffer for one training run."""

    def __init__(self, config: Config, policy: Policy):
        from tensordict import set_list_to_stack

        import cuma_env

        set_list_to_stack(True).set()
        self.config, self.policy = config, policy
        e, r = config.env, config.rollout
        self.group_size, self.prompts, size = r.group_size, r.prompts_per_step, vote_size(config)
        source, stream = training_curriculum(config, policy)
        self.curriculum = stream
        self.stream = RecordingStream(stream, self.prompts)
        initial = stream.state_dict()
        self.env = cuma_env.make_torchrl_env(
            e.id, tokenizer=policy.tokenizer, batch_size=size * r.prompts_per_step, source=source,
            prompt_template=e.prompt_template, problem_stream=self.stream, seed=config.seed, **episode_settings(config))
        self.subset = make_vote_subset(config)
        self.vote, self.buffer = vote_buffer(config, env=self.env, subset=self.subset)
        self.generated = size * r.prompts_per_step  # completions sampled per step
        postproc = self._self_certainty if e.reward == "self_certainty" else None
        with warnings.catch_warnings():  # gotcha 8
            warnings.filterwarnings("ignore", message=".*auto_register_policy_transforms.*")
            self.collector = OneStepCollector(self.env, policy=policy.generator,
                                              dialog_turns_per_batch=size * r.prompts_per_step,
                                              replay_buffer=self.buffer, postproc=postproc)
        self.stream.reset_to(initial)  # gotcha 7: undo the draws of the construction-time reset
        self._iterator = None

    def collect(self) -> RolloutBatch:
        """Sample one step's groups with the current weights; vote; return the kept members."""
        start = time.perf_counter()
        if self._iterator is None:
            self._iterator = iter(self.collector)
        self.buffer.empty()
        next(self._iterator)
        n = len(self.buffer)
        data = self.buffer[:n] if n else None
        infos = self.stream.pop_infos()
        return RolloutBatch(data=data, infos=infos, kept_groups=n // self.group_size,
                            seconds=time.perf_counter() - start, extra={"generated": self.generated})

    def _self_certainty(self, td: Any) -> Any:
        return add_self_certainty(self.policy, self.config, td)

    def weights_updated(self) -> None:
        """After an optimizer step: nothing to do, the generator samples from the learner's own weights."""

    def state_dict(self) -> dict[str, Any]:
        state = self.stream.state_dict()
        if self.subset is not None:
            state["vote_subset"] = self.subset.rng_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state)
        if self.subset is not None and "vote_subset" in state:
            self.subset.set_rng_state(state["vote_subset"])

    def summary(self) -> dict[str, Any]:
        return self.curriculum.summary()

    def shutdown(self) -> None:
        try:
            self.collector.shutdown()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def training_curriculum(config: Config, policy: Policy) -> tuple[Any, Any]:
    """(source, `CurriculumStream`): the run's training pool (`env.pool`: the train split by default, a skewed
    pool or a curated file), checked against the model's context, and the curriculum over it (with probes
    that sample from `policy` when `curriculum.probe`)."""
    from agents.train_pool import training_source
    from curricula import CurriculumStream

    source = training_source(config.env)
    check_training_context(policy, config, source)
    probe = make_probe(policy, config) if config.curriculum.probe else None
    return source, CurriculumStream({"name": config.curriculum.schedule, **config.curriculum.options}, source,
                                    seed=config.seed, probe=probe)


def vote_size(config: Config) -> int:
    """Responses sampled and voted on per prompt: `rollout.vote_group_size` (TTRL's N), else `rollout.group_size`."""
    return config.rollout.vote_group_size or config.rollout.group_size


def episode_settings(config: Config) -> dict[str, Any]:
    """`EpisodeConfig`'s knobs from the run's config, read once for the env, the learner-side vote and probes."""
    e = config.env
    return {"group_size": vote_size(config), "min_votes": e.min_votes, "reward": e.reward,
            "empty_votes": e.empty_votes, "last_number_fallback": e.last_number_fallback}


def make_vote_subset(config: Config) -> Any:
    """The `VoteSubset` that keeps `rollout.group_size` of the `vote_size` voted rows per group, or None when the
    run votes on the group it trains on."""
    n, m = vote_size(config), config.rollout.group_size
    return VoteSubset(n, m, seed=config.seed) if n > m else None


def vote_buffer(config: Config, env: Any = None, subset: Any = None, **binding: Any) -> tuple[Any, Any]:
    """(`GroupVote`, the replay buffer it is the write transform of), one step's P x G rows, for both rollouts.

    `env`: the TorchRL env whose config, reward, problems in flight and stream the vote reads
    (`GroupVote.from_env`); without one (Ray: the learner holds no env), `binding` gives the vote's `problems`,
    `problem_stream` and `source_name`, and its config is `episode_settings`. The batches written are fresh and
    never read again (a collector's, a worker's), so the vote writes in place (`copy=False`, `handover=True`).
    `subset`: a `VoteSubset` run after the vote (it writes the advantages of the rows it keeps).
    """
    from torchrl.data import LazyStackStorage, ReplayBuffer

    from cuma_env.torchrl.group_vote import GroupVote

    settings = {"drop_masked": config.train.masked_groups == "drop", "copy": False}
    if subset is not None:
        settings["advantage_key"] = None
    if env is not None:
        vote = env.group_vote(**settings)
    else:
        vote = GroupVote(config=EpisodeConfig(**episode_settings(config)), **settings, **binding)
    rows = config.rollout.group_size * config.rollout.prompts_per_step
    chain = (vote,) if subset is None else (subset, vote)  # `inv` runs a Compose's transforms last to first
    buffer = ReplayBuffer(storage=LazyStackStorage(rows), transform=InPlaceCompose(*chain, handover=True),
                          batch_size=rows)
    return vote, buffer


def add_self_certainty(policy: Policy, config: Config, td: Any) -> Any:
    """Collector postproc for the Intuitor reward: one self-certainty value per response."""
    from cuma_env.torchrl.token_stats import response_self_certainty

    rows = td.batch_size[0]
    size = config.train.micro_batch or rows  # one forward over all rows holds all their logits at once
    pad = policy.tokenizer.pad_token_id
    with policy.autocast():
        stats = torch.cat([response_self_certainty(policy.model, td[i:i + size] if size < rows else td,
                                                   pad_token_id=pad).reshape(-1) for i in range(0, rows, size)])
    td.set("token_stats", stats.to(torch.float32).reshape(td.batch_size))
    return td


def check_training_context(policy: Policy, config: Config, source: Any, per_level: int = 256) -> None:
    """A `ValueError` at the start, not a traceback at the first optimizer step, when prompts of the training pool
    (the first `per_level` of each level) plus `rollout.max_new_tokens` exceed the model's positions."""
    from agents.evaluation import context_overflow
    from cuma_env.catalog import get_task
    from cuma_env.prompting import resolve_template

    e, new_tokens = config.env, config.rollout.max_new_tokens
    sample = {lv: [source.get(lv, i) for i in range(min(per_level, source.size(lv)))] for lv in source.levels}
    overflow = context_overflow(policy, sample, resolve_template(e.prompt_template or get_task(e.id).template),
                                new_tokens)
    if overflow is not None and overflow[0]:
        over, total, limit = overflow
        raise ValueError(f"model.path: {config.model.path} has {limit} positions, but {over} of {total} training "
                         f"prompts checked ({e.id}) plus rollout.max_new_tokens={new_tokens} need more; use a model "
                         "with a longer context, a smaller rollout.max_new_tokens, or shorter problems "
                         "(env.levels, env.pool)")


def make_probe(policy: Policy, config: Config):
    """The curriculum's probe hook (`cuma_env.episode.probe_hook`): `probe(level, problems) -> list[info]`,
    sampled from `policy` at the training temperature, without training."""
    from cuma_env.catalog import get_task

    e, r = config.env, config.rollout

    def sample(texts: list[str]) -> list[list[str]]:
        return policy.generate_texts(render_prompts(policy.tokenizer, texts), samples=vote_size(config),
                                     temperature=r.temperature, max_new_tokens=r.max_new_tokens, top_p=r.top_p)

    return probe_hook(sample, e.prompt_template or get_task(e.id).template, EpisodeConfig(**episode_settings(config)))
