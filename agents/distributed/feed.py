"""How the learner's curriculum hands problems to Ray rollout workers.

    feed = ray.remote(num_cpus=0)(ProblemFeed).remote(workers=2)
    feed.post.remote(0, problems, seed)                # the learner: worker 0's groups of the next batch
    stream = FeedStream(feed, worker=0, per_batch=8)   # a worker's env draws from it (a `ProblemStream`)

A worker's TorchRL collector resets its env at construction (nothing posted yet: placeholders, never
stepped), at the start of its first batch, and after every step (TorchRL's pipelined loop: the reset after
batch k draws batch k+1). Every reset takes the worker's oldest posted batch, so the learner posts batch
k+1 before it asks for batch k. Taking a batch seeds the sampler for it: a run is reproducible from its config
and seed, and a resumed run samples what the uninterrupted one did. Workers never see a label: the learner
posts problems without their answers.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from cuma_env.problems import Problem

PLACEHOLDER = Problem(id="placeholder", prompt="1 + 1", level=1, source="placeholder")


class ProblemFeed:
    """Per-worker queues of posted batches (a Ray actor; plain Python so that it is testable without Ray)."""

    def __init__(self, workers: int):
        self.queues: list[deque[tuple[list[Problem], int]]] = [deque() for _ in range(int(workers))]

    def post(self, worker: int, problems: Sequence[Problem], seed: int) -> None:
        self.queues[worker].append(([without_label(p) for p in problems], int(seed)))

    def take(self, worker: int) -> tuple[list[Problem], int] | None:
        queue = self.queues[worker]
        return queue.popleft() if queue else None

    def pending(self) -> list[int]:
        return [len(q) for q in self.queues]

    def clear(self, worker: int) -> None:
        self.queues[worker].clear()


def without_label(problem: Problem) -> Problem:
    return dataclasses.replace(problem, answer=None) if problem.answer is not None else problem


class FeedStream:
    """A worker env's `ProblemStream`: whole posted batches, or placeholders when nothing is posted."""

    def __init__(self, feed: Any, worker: int, per_batch: int, placeholder: Problem = PLACEHOLDER):
        self.feed, self.worker, self.per_batch = feed, int(worker), int(per_batch)
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
        if isinstance(self.feed, ProblemFeed):
            return self.feed.take(self.worker)
        import ray

        return ray.get(self.feed.take.remote(self.worker))


def batch_seed(seed: int, batch: int, worker: int) -> int:
    """The sampler seed of one worker's share of one batch."""
    return (int(seed) * 1_000_003 + int(batch) * 7_919 + int(worker) * 104_729) % 2**31
