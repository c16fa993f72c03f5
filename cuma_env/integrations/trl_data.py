"""What TRL samples from: the catalog's tasks as a `datasets.Dataset`, or a curriculum as an endless
`datasets.IterableDataset`.

    train = catalog_dataset("CuMa-Arith-v0", levels=[1, 2])   # columns prompt, problem_id, level, source
    feed = CurriculumFeed(stream, "CuMa-Arith-v0")           # stream: any ProblemStream, e.g. a curricula stream
    train = feed.dataset()                                   # + make_reward_func(stream=feed), feed.callback(...)

`prompt` is a one-message chat (`[{"role": "user", "content": text}]`, the default; TRL applies the model's
chat template) or the plain text (`chat=False`). The text is the task's template applied to the problem, as
both environment faces render it. `answer` is added only on request (`with_answer=True`, for the labelled
`ground_truth` reward or diagnostics): label-free rewards never need it.

Why a feed and not the stream itself: TRL's data loader draws ahead of the vote (accelerate fetches the next
batch before the current one is scored), and a resumed TRL run loses the batch it had drawn. The feed keeps,
for each problem drawn and not yet voted on, the stream's state before that draw; its `state_dict()` (saved
with TRL's checkpoints by `CuMaCallback`) therefore lets a resumed run draw those same problems again and then
continue from the state at save time. It forwards `observe(info)` only for groups of problems it handed out,
so evaluation groups never move the curriculum.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cuma_env.catalog import get_task, make_source
from cuma_env.problems import Problem, ProblemStream
from cuma_env.prompting import format_prompt, resolve_template

FEED_STATE_VERSION = 1
_FEEDS: weakref.WeakValueDictionary[str, CurriculumFeed] = weakref.WeakValueDictionary()


def prompt_value(problem: Problem, template: str, chat: bool = True) -> str | list[dict[str, str]]:
    """The `prompt` cell of a problem: its templated text, as a one-message chat or plain."""
    text = format_prompt(problem, template)
    return [{"role": "user", "content": text}] if chat else text


def problem_row(problem: Problem, template: str, chat: bool = True, with_answer: bool = False) -> dict[str, Any]:
    row = {"prompt": prompt_value(problem, template, chat), "problem_id": problem.id, "level": problem.level,
           "source": problem.source}
    if with_answer:
        row["answer"] = problem.answer
    return row


def row_features(chat: bool = True, with_answer: bool = False) -> Any:
    """Explicit column types (an iterable dataset then never reads a row just to learn them)."""
    from datasets import Features, List, Value

    prompt = List({"role": Value("string"), "content": Value("string")}) if chat else Value("string")
    columns = {"prompt": prompt, "problem_id": Value("string"), "level": Value("int64"), "source": Value("string")}
    if with_answer:
        columns["answer"] = Value("string")
    return Features(columns)


def catalog_dataset(env_id: str = "CuMa-Arith-v0", split: str = "train", *, levels: Sequence[int] | None = None,
                    n_per_level: int | None = None, chat: bool = True, template: str | None = None,
                    with_answer: bool = False, data_dir: Any = None, seed: int = 0) -> Any:
    """A task's problems as a `datasets.Dataset` (level by level, in source order; TRL shuffles).

    `n_per_level` caps each level (CuMa-Arith-v0's train split has 583k problems at level 5); `template`
    defaults to the task's own (`compact` for arithmetic). Data files are read from `data_dir` or
    `$CUMA_DATA_DIR`, as everywhere else.
    """
    from datasets import Dataset

    if n_per_level is not None and n_per_level < 1:
        raise ValueError(f"n_per_level must be >= 1 or None (all), got {n_per_level}")
    source = make_source(env_id, split=split, levels=levels, data_dir=data_dir, seed=seed)
    template = resolve_template(template or get_task(env_id).template)
    rows = []
    for level in source.levels:
        size = source.size(level)
        if size is None and n_per_level is None:
            raise ValueError(f"{env_id} level {level} is an unbounded stream; give n_per_level")
        count = size if n_per_level is None else min(n_per_level, size if size is not None else n_per_level)
        rows.extend(problem_row(source.get(level, i), template, chat, with_answer) for i in range(count))
    return Dataset.from_list(rows, features=row_features(chat, with_answer))


class CurriculumFeed:
    """A `ProblemStream` between a curriculum and TRL's data loader (see the module docstring).

    Args:
        stream: the curriculum, any `ProblemStream`; checkpoints need its `state_dict`/`load_state_dict`.
        env_id: the task whose prompt template renders the problems (or give `template`).
        template: a template name or format string (default: the task's, else `default`).
        chat: render prompts as a one-message chat (default) or plain text.
    """

    def __init__(self, stream: ProblemStream, env_id: str | None = None, *, template: str | None = None,
                 chat: bool = True):
        if not isinstance(stream, ProblemStream):
            raise TypeError(f"stream must be a cuma_env.ProblemStream (next_problem, observe), got "
                            f"{type(stream).__name__}")
        self.stream = stream
        self.template = resolve_template(template or (get_task(env_id).template if env_id else "default"))
        self.chat = bool(chat)
        self.drawn = self.observed = self.ignored = 0
        self._pending: deque[tuple[str, Any]] = deque()  # (problem id, stream state before its draw)
        self._replay: deque[Any] = deque()
        self._post: Any = None
        self._lock = threading.RLock()

    # --- ProblemStream -----------------------------------------------------------------------------
    def next_problem(self) -> Problem:
        with self._lock:
            if self._replay:  # resuming: draw again what the checkpointed run had drawn but not voted on
                pre = self._replay.popleft()
                self.stream.load_state_dict(pre)
                problem = self.stream.next_problem()
                if not self._replay:
                    self.stream.load_state_dict(self._post)
                    self._post = None
            else:
                pre = self.stream.state_dict() if hasattr(self.stream, "state_dict") else None
                problem = self.stream.next_problem()
            self._pending.append((problem.id, pre))
            self.drawn += 1
            return problem

    def observe(self, info: Mapping[str, Any]) -> None:
        """Forward a scored group to the stream if its problem came from this feed and was not heard yet."""
        with self._lock:
            pid = info.get("problem_id")
            for k, (drawn_id, _) in enumerate(self._pending):
                if drawn_id == pid:
                    del self._pending[k]
                    break
            else:
                self.ignored += 1
                return
            self.observed += 1
            self.stream.observe(info)

    # --- TRL ---------------------------------------------------------------------------------------
    def dataset(self) -> Any:
        """An endless `datasets.IterableDataset` of rows drawn from this feed (GRPOConfig needs `max_steps`,
        `shuffle_dataset=False` and `ignore_data_skip=True`; `CuMaCallback` checks them)."""
        from datasets import IterableDataset

        key = f"feed-{id(self):x}"
        _FEEDS[key] = self
        # `datasets` hashes the generator and its kwargs (dill): hand it a module function and a key, not the
        # feed, whose stream may hold a probe and, through it, the model
        return IterableDataset.from_generator(_feed_rows, features=row_features(self.chat),
                                              gen_kwargs={"feed_key": key})

    def callback(self, reward: Any = None, **kwargs: Any) -> Any:
        """A `CuMaCallback` that saves this feed with TRL's checkpoints (and checks `reward` against the config)."""
        from cuma_env.integrations.trl_callback import CuMaCallback

        return CuMaCallback(reward, curriculum=self, **kwargs)

    # --- state -------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Problems drawn and not yet voted on (TRL's draw-ahead)."""
        return len(self._pending) + len(self._replay)

    def state_dict(self) -> dict[str, Any]:
        """The stream's state now, and its state before each draw not yet voted on (JSON-able)."""
        if not hasattr(self.stream, "state_dict"):
            raise TypeError(f"{type(self.stream).__name__} has no state_dict(): its position cannot be saved")
        with self._lock:
            replaying = bool(self._replay)
            return {"version": FEED_STATE_VERSION,
                    "stream": self._post if replaying else self.stream.state_dict(),
                    "pending": [pre for _, pre in self._pending] + list(self._replay),
                    "counters": {"drawn": self.drawn, "observed": self.observed, "ignored": self.ignored}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore; the next `len(state["pending"])` draws repeat the saved run's unvoted ones."""
        if state.get("version") != FEED_STATE_VERSION:
            raise ValueError(f"curriculum feed state version {state.get('version')!r}, expected {FEED_STATE_VERSION}")
        with self._lock:
            pending = list(state["pending"])
            self._pending.clear()
            self._replay = deque(pending)
            self._post = state["stream"] if pending else None
            self.stream.load_state_dict(state["stream"] if not pending else pending[0])
            counters = state.get("counters", {})
            self.drawn = int(counters.get("drawn", 0)) - len(pending)
            self.observed = int(counters.get("observed", 0))
            self.ignored = int(counters.get("ignored", 0))

    def summary(self) -> dict[str, Any]:
        """The stream's summary (if it has one) plus the feed's counters; `level` is what TRL logs."""
        inner = self.stream.summary() if hasattr(self.stream, "summary") else {}
        return {**inner, "feed_drawn": self.drawn, "feed_observed": self.observed, "feed_pending": self.pending}

    def __repr__(self) -> str:
        return f"CurriculumFeed({self.stream!r}, chat={self.chat})"


def _feed_rows(feed_key: str) -> Iterator[dict[str, Any]]:
    """The endless rows of the feed registered under `feed_key` (see `CurriculumFeed.dataset`)."""
    feed = _FEEDS.get(feed_key)
    if feed is None:
        raise RuntimeError("the CurriculumFeed behind this dataset no longer exists; keep a reference to it")
    while True:
        yield problem_row(feed.next_problem(), feed.template, feed.chat)
