"""The sympy worker: a persistent subprocess that compares answers with math-verify, and its client pool.

Why a subprocess: sympy cannot be interrupted from another thread, and math-verify's own timeouts use
`signal.alarm`, which only works in the main thread. A separate process can simply be killed when a
caller's deadline passes, from any thread. Why not `multiprocessing`: its spawn start method re-imports
the user's `__main__`. The worker is started with `subprocess.Popen` running this file by path (so that
importing the `cuma_env` package, which loads gymnasium, does not slow every start), speaks JSON lines
over its pipes, and exits on stdin EOF or when its parent disappears.

Protocol: request `{"id", "items": [latex...], "pairs": [[i, j], ...]}`; the worker streams
`{"id", "ev": "parse", "i"}` / `{"id", "ev": "cmp", "i", "j"}` before each step (so the client knows
what was running when it gave up), `{"id", "ev": "res", "i", "j", "eq"}` after each comparison, and
`{"id", "ev": "done"}` at the end. Pairs already joined by earlier results are skipped.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

MAX_WORKERS = 4
BLAME_AFTER = 1.0  # seconds one parse/comparison must have run before it is remembered as hopeless
_MEMORY_LIMIT = 4 << 30  # bytes of address space for one worker


# ------------------------------------------------------------------------------------------ process side
def _find(root: list[int], x: int) -> int:
    """Union-find root of x, halving the path as it goes."""
    while root[x] != x:
        root[x] = root[root[x]]
        x = root[x]
    return x


def _serve() -> None:  # pragma: no cover - runs in the subprocess
    parent = os.getppid()

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = _MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(_MEMORY_LIMIT, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass
    import logging

    logging.disable(logging.CRITICAL)
    import sympy
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(), ExprExtractionConfig()]
    imag = sympy.Symbol("i")
    cache: dict[str, list] = {}

    def parsed(text: str) -> list:
        if text not in cache:
            if len(cache) > 20000:
                cache.clear()
            result = parse("\\boxed{" + text + "}", extraction_config=config, parsing_timeout=None)
            fixed = []
            for item in result:  # MARIO convention: a free `i` is the imaginary unit
                if isinstance(item, sympy.Basic) and imag in getattr(item, "free_symbols", ()):
                    item = item.subs(imag, sympy.I)
                fixed.append(item)
            cache[text] = fixed
        return cache[text]

    def rationalized(items: list) -> list:
        out = []
        for x in items:
            if isinstance(x, sympy.Basic) and x.atoms(sympy.Float):
                x = sympy.nsimplify(x, rational=True)
            out.append(x)
        return out

    def equal(a: list, b: list) -> bool:
        """Symmetric: math-verify's verify(gold, pred) is not, so both directions must agree."""
        if not a or not b:
            return False
        kwargs = dict(timeout_seconds=None, allow_set_relation_comp=True)
        if verify(a, b, **kwargs) and verify(b, a, **kwargs):
            return True
        ra, rb = rationalized(a), rationalized(b)  # `x^{0.5}` defeats simplify; exact decimals do not
        if any(x is not y for x, y in zip(ra + rb, a + b)):
            return bool(verify(ra, rb, **kwargs) and verify(rb, ra, **kwargs))
        return False

    def emit(msg: dict) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    try:  # warm the parser and grader so the first real request is fast
        equal(parsed("\\frac{1}{2}+x"), parsed("0.5+x"))
    except Exception:
        pass
    emit({"ready": True, "pid": os.getpid()})

    for line in sys.stdin:
        try:
            req = json.loads(line)
            rid, items, pairs = req["id"], req["items"], req["pairs"]
        except (ValueError, KeyError, TypeError):
            continue
        root = list(range(len(items)))

        rejected: set[tuple[int, int]] = set()
        for i, j in pairs:
            ri, rj = _find(root, i), _find(root, j)
            if ri == rj or (ri, j) in rejected:
                continue
            eq = False
            try:
                for k in (i, j):
                    if items[k] not in cache:
                        emit({"id": rid, "ev": "parse", "i": k})
                        parsed(items[k])
                emit({"id": rid, "ev": "cmp", "i": i, "j": j})
                eq = equal(parsed(items[i]), parsed(items[j]))
            except (Exception, RecursionError, MemoryError):
                eq = False
            emit({"id": rid, "ev": "res", "i": i, "j": j, "eq": eq})
            if eq:
                root[ri] = rj
            else:
                rejected.add((ri, j))
        emit({"id": rid, "ev": "done"})


# ------------------------------------------------------------------------------------------- client side
class Worker:
    """One worker process; a reader thread turns its stdout into a queue of messages (None = died)."""

    def __init__(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", __file__, "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, encoding="utf-8", bufsize=1, env=env, close_fds=True,
        )
        self.messages: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self.ready = threading.Event()
        self.dead = False
        self.failed_start = False
        threading.Thread(target=self._read, name="cuma-answers-reader", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("ready"):
                    self.ready.set()
                else:
                    self.messages.put(msg)
        except (OSError, ValueError):
            pass
        self.dead = True
        self.failed_start = not self.ready.is_set()
        self.ready.set()  # wake anyone waiting for a start that will never come
        self.messages.put(None)

    def send(self, request: dict[str, Any]) -> bool:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            return True
        except (OSError, ValueError):
            self.dead = True
            return False

    def kill(self) -> None:
        self.dead = True
        try:
            self.proc.kill()
        except OSError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass
        threading.Thread(target=self.proc.wait, daemon=True).start()  # reap without blocking the caller


class Pool:
    """Up to `max_workers` workers, started on demand; a caller holds one worker for one request."""

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self.max_workers = max_workers
        self.cond = threading.Condition()
        self.idle: list[Worker] = []
        self.count = 0
        self.next_id = 0
        self.retry_after = 0.0  # after a worker failed to start, do not respawn for a while
        self.pid = os.getpid()

    def _after_fork(self) -> None:
        """A forked child must not share its parent's pipes (and has no reader threads): start afresh."""
        if self.pid != os.getpid():
            self.pid, self.idle, self.count = os.getpid(), [], 0

    def prewarm(self, wait: bool = False, timeout: float = 30.0) -> bool:
        """Start one worker now (imports take about a second); optionally wait until it is ready."""
        with self.cond:
            self._after_fork()
            if not self.idle and self.count < self.max_workers:
                spawned = self._spawn()
                if spawned is not None:
                    self.idle.append(spawned)
            worker = self.idle[0] if self.idle else None
        if worker is None:
            return False
        return (worker.ready.wait(timeout) and not worker.dead) if wait else True

    def _spawn(self) -> Worker | None:
        if time.monotonic() < self.retry_after:
            return None
        try:
            worker = Worker()
        except (OSError, ValueError, subprocess.SubprocessError):
            self.retry_after = time.monotonic() + 30.0
            return None
        self.count += 1
        return worker

    def acquire(self, deadline: float) -> Worker | None:
        """An idle worker (started if needed) or None if none is ready before `deadline`."""
        with self.cond:
            self._after_fork()
            while True:
                for w in list(self.idle):
                    if w.dead:
                        self.idle.remove(w)
                        self.count -= 1
                ready = [w for w in self.idle if w.ready.is_set()]
                if ready or self.idle:
                    worker = (ready or self.idle)[0]
                    self.idle.remove(worker)
                    break
                if self.count < self.max_workers:
                    spawned = self._spawn()
                    if spawned is None:
                        return None
                    worker = spawned
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.cond.wait(remaining):
                    return None
        if worker.ready.wait(max(0.0, deadline - time.monotonic())) and not worker.dead:
            return worker
        self.release(worker)  # still starting: leave it for the next caller
        return None

    def release(self, worker: Worker) -> None:
        with self.cond:
            if worker.dead:
                self.count -= 1
                if worker.failed_start:  # e.g. math-verify missing: stop paying for doomed starts
                    self.retry_after = time.monotonic() + 30.0
            else:
                self.idle.append(worker)
            self.cond.notify()

    def discard(self, worker: Worker) -> None:
        worker.kill()
        self.release(worker)

    def request_id(self) -> int:
        with self.cond:
            self.next_id += 1
            return self.next_id

    def shutdown(self) -> None:
        with self.cond:
            if self.pid != os.getpid():
                return  # the workers belong to the parent process
            workers, self.idle = self.idle, []
            self.count -= len(workers)
        for w in workers:
            w.kill()


POOL = Pool()
atexit.register(POOL.shutdown)


def compare_pairs(items: list[str], pairs: list[tuple[int, int]], deadline: float):
    """Ask a worker to compare `pairs` of `items` before `deadline` (time.monotonic()).

    Returns (results, blamed): results maps each finished pair to its verdict; blamed is the item index
    being parsed, or the pair being compared, when the deadline passed after that step had run for
    BLAME_AFTER seconds (the worker is then killed), else None. Pairs without a verdict must be treated
    as "not equivalent".
    """
    results: dict[tuple[int, int], bool] = {}
    if not pairs:
        return results, None
    worker = POOL.acquire(deadline)
    if worker is None:
        return results, None
    rid = POOL.request_id()
    if not worker.send({"id": rid, "items": items, "pairs": [list(p) for p in pairs]}):
        POOL.discard(worker)
        return results, None
    current: Any = None
    since = time.monotonic()
    while True:
        remaining = deadline - time.monotonic()
        try:
            msg = worker.messages.get(timeout=remaining) if remaining > 0 else None
        except queue.Empty:
            msg = None
        if msg is None:  # deadline passed or the worker died
            POOL.discard(worker)
            # Blame a step only if it really ran long, not because the caller's budget was nearly spent.
            return results, (current if time.monotonic() - since >= BLAME_AFTER else None)
        if msg.get("id") != rid:
            continue
        ev = msg.get("ev")
        since = time.monotonic()
        if ev == "parse":
            current = msg["i"]
        elif ev == "cmp":
            current = (msg["i"], msg["j"])
        elif ev == "res":
            results[(msg["i"], msg["j"])] = bool(msg["eq"])
            current = None
        elif ev == "done":
            POOL.release(worker)
            return results, None


if __name__ == "__main__":  # pragma: no cover
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]  # no shadowing by siblings
    _serve()
