"""`RayRollout`: the single-process `agents.rollout.Rollout`'s interface over N TorchRL Ray collectors.

    rollout = RayRollout(config, policy)      # config.rollout.workers = N > 1; policy: the learner's
    batch = rollout.collect()                 # one optimizer step's voted groups (a `RolloutBatch`)
    rollout.weights_updated()                 # after the optimizer step: push the weights to every worker

Per batch the learner draws `prompts_per_step` problems from the curriculum (through the same
`RecordingStream` as the single-process agent), posts each worker a slice of whole groups, and asks every
worker's `RayLLMCollector` for its rows. The rows come back to the learner, which votes them worker by worker,
i.e. in draw order, through a replay buffer whose write transform is the `GroupVote`, with each group's
`Problem` (label included, for the oracle reward and the diagnostics) looked up by its group id. So given
the same completions, the draws, rewards, masks and curriculum decisions are those of the single-process
agent, whose collector also draws batch k+1 after batch k-1 was voted and before batch k is.

Modes (`rollout.mode`):
- `sync`: one batch in flight; every batch is sampled with the weights of the step before (staleness 0).
- `async`: `rollout.max_staleness` = K batches are generated ahead, so workers sample while the learner
  trains; a batch trained at step s was sampled with the weights of step s-1-K or later. A batch older than
  that (a worker that fell behind) is voted, so the curriculum hears it, but not trained on; it is counted.
  Draws run K batches further ahead of the votes than in sync mode.

TorchRL 0.14.1 workarounds (docs/torchrl-gotchas.md): `remote_config={}` always (a None breaks `num_cpus`); the
collectors get no replay buffer (a `RayReplayBuffer` does not pickle into a `RayLLMCollector`): the learner
fetches the rows and writes its own buffer; the loop is bounded by the trainer, never by `total_dialog_turns`.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from agents.config import Config
from agents.distributed.feed import batch_seed, post
from agents.distributed.ray_session import RaySession
from agents.distributed.workers import WorkerSpec, make_env, make_policy, one_step_ray_collector
from agents.policy import Policy
from agents.rollout import (
    RecordingStream,
    RolloutBatch,
    WorkerLost,
    add_self_certainty,
    training_curriculum,
    vote_buffer,
)
from cuma_env.problems import Problem


@dataclass
class _Submitted:
    version: int                        # the optimizer steps behind the weights that sample it
    problems: list[list[Problem]]       # per worker, in draw order
    futures: list[Any]                  # per worker, the ObjectRef of its rows


VERSION_KEY = "policy_version"  # per sample: the optimizer steps behind the weights that sampled it


class RayRollout:
    """Curriculum + vote in the learner, sampling on Ray workers; see the module docstring."""

    workers_can_fail = True  # the trainer keeps each step's starting state, to checkpoint it if one dies

    def __init__(self, config: Config, policy: Policy):
        from tensordict import set_list_to_stack

        set_list_to_stack(True).set()
        self.config, self.policy = config, policy
        r = config.rollout
        layout, gpus = None, None  # vLLM workers: (replicas, GPUs per replica), the GPUs the engines hold
        if config.model.backend == "vllm":  # before Ray starts: one line where vLLM workers cannot run here
            from agents.distributed.vllm_engines import check_engines

            layout = check_engines(config, policy)
            gpus = layout[0] * layout[1]  # the engines hold the GPUs, the collectors none
        self.workers, self.group_size, self.prompts = r.workers, r.group_size, r.prompts_per_step
        self.groups_per_worker = self.prompts // self.workers
        self.depth = r.max_staleness if r.mode == "async" else 0
        source, self.curriculum = training_curriculum(config, policy)
        self.stream = RecordingStream(self.curriculum, self.prompts)
        self._problems: dict[int, Problem] = {}
        self.vote, self.buffer = vote_buffer(config, problems=self._problems, problem_stream=self.stream,
                                             source_name=source.name)
        self.session = RaySession(config.ray, self.workers, gpus=gpus)
        self.session.start()
        self.engines = None  # vLLM workers: the replicas and the weight broadcast (agents.distributed.vllm_engines)
        try:
            if layout is not None:
                from agents.distributed.vllm_engines import VLLMEngines

                self.engines = VLLMEngines.start(config, policy, *layout)
            self._start_workers()
        except BaseException:
            self.shutdown()
            raise
        self.batches = 0       # batches asked for
        self.voted = 0         # batches voted
        self.version = 0       # optimizer steps behind the weights the workers have now
        self.in_flight: deque[_Submitted] = deque()
        self.next_draw: list[Problem] | None = None
        self.stale_dropped = 0

    # --- workers -------------------------------------------------------------------------------
    def _start_workers(self) -> None:
        from ray.util.queue import Queue

        c, ray_config = self.config, self.config.ray
        self.queues = [Queue(actor_options={"num_cpus": 0}) for _ in range(self.workers)]
        model = _worker_model(c, self.policy)
        self.collectors = []
        for index in range(self.workers):
            spec = WorkerSpec(index=index, groups=self.groups_per_worker, model=model, rollout=c.rollout,
                              env_id=c.env.id, prompt_template=c.env.prompt_template, seed=c.seed,
                              posts=self.queues[index], engine=None if self.engines is None else self.engines.engine)
            with warnings.catch_warnings():  # gotcha 8
                warnings.filterwarnings("ignore", message=".*auto_register_policy_transforms.*")
                self.collectors.append(one_step_ray_collector(
                    env=functools.partial(make_env, spec), policy_factory=functools.partial(make_policy, spec),
                    dialog_turns_per_batch=spec.rows, remote_config={},  # gotcha 19: never None
                    num_cpus=ray_config.num_cpus_per_worker,  # vLLM: the engines hold the GPUs, not the collectors
                    num_gpus=0 if self.engines else ray_config.num_gpus_per_worker,
                    flatten_data=True))
        self._wait_all([col._collector.is_running.remote() for col in self.collectors])  # built (and reset)
        self._push_weights()

    def _push_weights(self) -> None:
        """Send the learner's weights to every worker; calls to an actor run in order, so every batch asked
        for after this samples from them. vLLM: one broadcast into the shared replicas, which returns once
        they hold the weights (in async mode a batch already generating may finish on them)."""
        import ray
        from tensordict import TensorDict

        if self.engines is not None:
            self.engines.push()
            return
        weights = ray.put(TensorDict.from_module(self.policy.generator).data.detach().cpu())
        for col in self.collectors:
            col._collector.update_policy_weights_.remote(policy_or_weights=weights)

    def weights_updated(self) -> None:
        self.version += 1
        self._push_weights()

    # --- batches -------------------------------------------------------------------------------
    def _draw(self) -> list[Problem]:
        return [self.stream.next_problem() for _ in range(self.prompts)]

    def _submit(self) -> None:
        """Post the batch after this one (the worker's post-step reset takes it), then ask for this one."""
        if self.next_draw is None:  # the first batch of the run (or of a resumed run)
            self.next_draw = self._draw()
            self._post(self.next_draw, self.batches + 1)
        problems, self.batches = self.next_draw, self.batches + 1
        self.next_draw = self._draw()
        self._post(self.next_draw, self.batches + 1)
        n = self.groups_per_worker
        slices = [problems[i * n:(i + 1) * n] for i in range(self.workers)]
        futures = [col._collector.next.remote() for col in self.collectors]
        self.in_flight.append(_Submitted(self.version, slices, futures))

    def _post(self, problems: list[Problem], batch: int) -> None:
        n = self.groups_per_worker
        for w, posts in enumerate(self.queues):  # a blocking put: taken only after it is in
            post(posts, problems[w * n:(w + 1) * n], batch_seed(self.config.seed, batch, w))

    def collect(self) -> RolloutBatch:
        """One step's voted groups: sampled by the workers, voted here in draw order."""
        start = time.perf_counter()
        while len(self.in_flight) <= self.depth:
            self._submit()
        submitted = self.in_flight.popleft()
        parts = self._wait_all(submitted.futures)
        staleness = self.voted - submitted.version  # optimizer steps between its weights and this step's
        self.buffer.empty()
        for rows, problems in zip(parts, submitted.problems):
            self._register(rows, problems)
            rows.set(VERSION_KEY, torch.full((rows.batch_size[0],), submitted.version, dtype=torch.int64))
            if self.config.env.reward == "self_certainty":
                rows = add_self_certainty(self.policy, self.config, rows)
            self.buffer.extend(rows)
        self.voted += 1
        n = len(self.buffer)
        data = self.buffer[:n] if n else None
        dropped = 0
        if staleness > self.depth and data is not None:
            dropped, data, n = n, None, 0
            self.stale_dropped += dropped
        infos = self.stream.pop_infos()
        extra = {"staleness": float(staleness), "stale_dropped": float(dropped)}
        return RolloutBatch(data=data, infos=infos, kept_groups=n // self.group_size,
                            seconds=time.perf_counter() - start, extra=extra)

    def _register(self, rows: Any, problems: list[Problem]) -> None:
        """Map this worker's group ids (in row order) to the problems posted for them."""
        from cuma_env.torchrl.layout import as_str_list

        n = rows.batch_size[0]
        ids = rows.get("group_id").reshape(n, -1)[:, 0].tolist()
        sampled = as_str_list(rows.get("problem_id"), n)
        first = {}  # group id -> its first row, in row order
        for row, group_id in enumerate(ids):
            first.setdefault(int(group_id), row)
        if len(first) != len(problems):
            raise RuntimeError(f"a worker returned {len(first)} groups for the {len(problems)} posted to it")
        for (group_id, row), problem in zip(first.items(), problems):
            if sampled[row] != problem.id:
                raise RuntimeError(f"a worker sampled {sampled[row]!r} where {problem.id!r} was posted: its feed "
                                   "is out of step")
            self._problems[group_id] = problem

    def _wait_all(self, futures: list[Any]) -> list[Any]:
        import ray

        try:
            return ray.get(futures)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            raise WorkerLost(f"a rollout worker died ({type(exc).__name__}); resume the run from its last "
                             "checkpoint") from None

    # --- state and lifecycle -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**self.stream.state_dict(), "voted": self.voted}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the batches drawn and not voted are redrawn (and resampled with their seeds)."""
        if self.in_flight or self.batches:
            raise RuntimeError("load_state_dict before the first collect()")
        self.stream.load_state_dict(state)
        self.voted = self.batches = self.version = int(state.get("voted", 0))
        self._push_weights()  # the checkpoint's weights, loaded into the learner's model just before

    def summary(self) -> dict[str, Any]:
        summary = dict(self.curriculum.summary())
        summary.update(workers=self.workers, mode=self.config.rollout.mode, stale_dropped=self.stale_dropped)
        return summary

    def shutdown(self) -> None:
        """Stop the workers and, if this run started it, Ray (no process is left behind)."""
        import ray

        for col in getattr(self, "collectors", []):
            try:
                ray.kill(col._collector)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            # TorchRL's collector `__del__` calls `shutdown()`, a remote call that would start a new local Ray
            # once this one is shut down (torchrl 0.14.1): the wrapper is done, so its shutdown is a no-op
            col.shutdown = _done
        for posts in getattr(self, "queues", []):
            try:
                posts.shutdown(force=True)
            except Exception:  # noqa: BLE001
                pass
        if getattr(self, "engines", None) is not None:
            self.engines.shutdown()
            self.engines = None
        self.collectors, self.queues = [], []
        self.session.stop()


def _done(*args: Any, **kwargs: Any) -> None:
    return None


def _worker_model(config: Config, policy: Policy) -> Any:
    """The model section a worker builds from: the learner's resolved source (no cache lookup on the worker)
    and one thread per worker CPU."""
    from dataclasses import replace

    threads = max(1, int(config.ray.num_cpus_per_worker))
    return replace(config.model, path=policy.source, num_threads=threads)
