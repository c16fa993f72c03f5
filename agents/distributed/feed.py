"""How the learner's curriculum hands problems to Ray rollout workers: one Ray queue per worker.

    queues = [ray.util.queue.Queue(actor_options={"num_cpus": 0}) for _ in range(workers)]
    post(queues[0], problems, seed)                      # the learner: worker 0's groups of the next batch
    stream = FeedStream(queues[0], worker=0, per_batch=8)  # on worker 0: its env's `ProblemStream`

A worker's TorchRL collector resets its env at construction (nothing posted yet: placeholders, never
stepped), at the start of its first batch, and after every step (the pipelined loop: the reset after batch k
draws batch k+1). Every reset takes the worker's oldest posted batch, so the learner posts batch k+1 before it
asks for batch k. Taking a batch seeds the sampler for it: a run is reproducible from its config and seed, and
a resumed run samples what the uninterrupted one did. Workers never see a label: `post` strips the answers.
Any queue with `put` and `get_nowait` (raising `queue.Empty`) works: Ray's, or the standard library's in tests.
"""

from __future__ import annotations

import dataclasses
import queue
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from cuma_env.problems import Problem

PLACEHOLDER = Problem(id="placeholder", prompt="1 + 1", level=1, source="placeholder")


def post(posts: Any, problems: Sequence[Problem], seed: int) -> None:
    """Queue one worker's share of a batch, without labels, with the seed that samples it."""
    posts.put(([without_label(p) for p in problems], int(seed)))


def without_label(problem: Problem) -> Problem:
    return dataclasses.replace(problem, answer=None) if problem.answer is not None else problem


class FeedStream:
    """A worker env's `ProblemStream`: whole posted batches, or placeholders when nothing is posted."""

    def __init__(self, posts: Any, worker: int, per_batch: int, placeholder: Problem = PLACEHOLDER):
        self.posts, self.worker, self.per_batch = posts, int(worker), int(per_batch)
        self.placeholder = placeholder
        self.queue: deque[Problem] = deque()
        self.placeholders = 0

    def next_problem(self) -> Problem:
        if not self.queue:
            posted = self._take()
            if posted is None:
                self.queue.extend([self.placeholder] * self.per_batch)
                self.placeholders += self.per_batch
            else:
                problems, seed = posted
                if len(problems) != self.per_batch:
                    raise ValueError(f"worker {self.worker} was posted {len(problems)} problems; its env batch "
                                     f"holds {self.per_batch} groups")
                import torch

                torch.manual_seed(seed)  # this batch's sampling, whichever worker runs it and whenever
                self.queue.extend(problems)
        return self.queue.popleft()

    def observe(self, info: Mapping[str, Any]) -> None:
        """Nothing: the learner votes and tells the curriculum."""

    def _take(self) -> tuple[list[Problem], int] | None:
        try:
            return self.posts.get_nowait()
        except queue.Empty:  # Ray's Empty subclasses it
            return None


def batch_seed(seed: int, batch: int, worker: int) -> int:
    """The sampler seed of one worker's share of one batch."""
    return (int(seed) * 1_000_003 + int(batch) * 7_919 + int(worker) * 104_729) % 2**31
