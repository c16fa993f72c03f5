"""Reassemble the groups that verl's per-sample reward loop hands over one sample at a time.

From verl 0.7.1 the trainer computes rewards per sample: each finished rollout goes on its own to a reward
worker's `run_single`. A vote needs the whole group, so `GroupRendezvous` holds each sample until the other
members of its uid have arrived (n of them), scores the group once, and answers every waiting sample. This
only works when all samples of a prompt reach the same worker process (verl's `reward.num_workers=1`).

A group that never fills (a failed rollout, a group size the trainer did not announce, a padding copy of
a row) is scored after `timeout_s` with the members it has, so it cannot stall training. A uid seen again
after its group was scored opens a new group: uids may be reused across steps (a dataset's own uid column),
and remembering closed uids would silently score such a group one sample at a time. Pure asyncio: no verl.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

M = TypeVar("M")
R = TypeVar("R")


@dataclass
class _OpenGroup(Generic[M]):
    expected: int
    timer: asyncio.TimerHandle
    members: list[M] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)


class GroupRendezvous(Generic[M, R]):
    """Collect members per uid; `score(members) -> results` (one per member, same order) runs once per group.

    `score` is synchronous and runs in the event loop's default executor, so slow answer checks do not
    block the samples still arriving.
    """

    def __init__(self, score: Callable[[list[M]], Sequence[R]], timeout_s: float = 600.0):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self._score = score
        self.timeout_s = float(timeout_s)
        self._open: dict[Hashable, _OpenGroup[M]] = {}
        self._tasks: set[asyncio.Task] = set()
        self.partial_groups = 0  # groups scored after the timeout with fewer members than expected

    @property
    def waiting(self) -> int:
        """Samples currently held for their group."""
        return sum(len(g.members) for g in self._open.values())

    async def join(self, uid: Hashable, expected: int, member: M) -> R:
        """Wait for the group of `uid` (`expected` members) and return this member's result."""
        if not isinstance(expected, int) or isinstance(expected, bool) or expected < 1:
            raise ValueError(f"expected group size must be a positive int, got {expected!r}")
        loop = asyncio.get_running_loop()
        group = self._open.get(uid)
        if group is None:
            group = _OpenGroup(expected, loop.call_later(self.timeout_s, self._close, uid, loop, True))
            self._open[uid] = group
        waiter = loop.create_future()
        group.members.append(member)
        group.waiters.append(waiter)
        if len(group.members) >= group.expected:
            self._close(uid, loop, False)
        return await waiter

    def _close(self, uid: Hashable, loop: asyncio.AbstractEventLoop, timed_out: bool) -> None:
        group = self._open.pop(uid, None)
        if group is None:
            return
        group.timer.cancel()
        self.partial_groups += int(timed_out)
        task = loop.create_task(self._finish(loop, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, loop: asyncio.AbstractEventLoop, group: _OpenGroup[M]) -> None:
        try:
            results = await self._run(loop, group.members)
        except Exception as exc:  # every waiting sample sees the failure, none hangs
            for waiter in group.waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter, result in zip(group.waiters, results):
            if not waiter.done():
                waiter.set_result(result)

    async def _run(self, loop: asyncio.AbstractEventLoop, members: list[M]) -> Sequence[Any]:
        results = await loop.run_in_executor(None, self._score, list(members))
        if len(results) != len(members):
            raise ValueError(f"score returned {len(results)} results for {len(members)} members")
        return results
