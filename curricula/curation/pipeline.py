"""The curation run: prompt -> generator -> parse -> validate -> de-duplicate -> append, resumably.

Call `i` (0-based) asks for `per_call` problems of the `i % len(pairs)`-th (level, topic) pair, where pairs
are ordered topic-major (`[(l, t) for t in topics for l in levels]`), so every prefix of whole sweeps is
balanced. Its reference examples and its sampling seed are pure functions of (seed, i): a resumed run asks
exactly what an uninterrupted one would have asked.

Output: JSON Lines in the pools' layout (`Problem.to_json()`): `id`, `problem`, `level`, `source`
("curated"), `answer` (the generator's own answer, a hidden reference only: label-free rewards never read it;
None when the generator gave none), and metadata: `unique_id` (= `id`, as in the MATH files), `subject`
(MATH subject name), `topic`, `generator`, `seed`, `call`, `call_seed`, `references` (ids of the reference
problems shown), `finish_reason`.

Durability and resume:
- each call's kept records are appended in one `write` followed by `fsync` (nothing is written for a call
  until it is complete), then the state file `<out>.state.json` (next call, counters, settings) is replaced
  atomically (temp file + fsync + rename);
- on start, a torn trailing line (no newline) is truncated away, complete lines are never touched, and the
  next call is `max(state.next_call, 1 + last call in the file)`, so a crash between the append and the state
  update neither repeats nor loses a call;
- every record already in the file is indexed for de-duplication before new ones are accepted;
- a lock file `<out>.lock` (fcntl) stops two runs from writing the same file;
- a rerun with different settings (seed, levels, topics, per_call, k) is refused: use a new output file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cuma_env.atomic_io import atomic_file
from cuma_env.problems import LEVELS, Problem

from .backends import Completion, Generator
from .data import SeedProblem
from .dedup import TRAIN_INDEX_DEFAULTS, NearDupIndex
from .parsing import parse_completion
from .prompts import TOPICS, ReferenceSampler, build_messages, stable_int, topic_slug
from .validation import ValidationConfig, check_answer, repair_statement, validate_problem

STATE_VERSION = 1


class CurationStateError(RuntimeError):
    """The output file or its state cannot be continued safely (different settings, corrupt line, lock)."""


@dataclass(frozen=True)
class CurationConfig:
    """What to generate and where (defaults in brackets).

    `calls`: total generator calls [one sweep: len(levels) * len(topics)]. `per_call`: problems asked per
    call [25]. `k_examples`: reference problems shown per call [4]. `dup_threshold`: Jaccard bar against the
    seed pool and already generated problems [0.6]; the evaluation-set bar lives in the eval index.
    """

    out: Path
    levels: tuple[int, ...] = LEVELS
    topics: tuple[str, ...] = tuple(TOPICS)
    per_call: int = 25
    calls: int | None = None
    seed: int = 0
    k_examples: int = 4
    dup_threshold: float = TRAIN_INDEX_DEFAULTS["threshold"]
    validation: ValidationConfig = ValidationConfig()
    save_rejects: bool = False
    save_raw: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if not self.levels or any(lv not in LEVELS for lv in self.levels):
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {self.levels!r}")
        if not self.topics:
            raise ValueError("topics must not be empty")
        object.__setattr__(self, "topics", tuple(topic_slug(t) for t in self.topics))
        object.__setattr__(self, "levels", tuple(int(lv) for lv in self.levels))
        for name, value, low in (("per_call", self.per_call, 1), ("k_examples", self.k_examples, 0),
                                 ("calls", self.calls, 0)):
            if value is not None and value < low:
                option = "--" + name.replace("_", "-")
                raise ValueError(f"{name} ({option}) must be >= {low}, got {value}")

    @property
    def pairs(self) -> list[tuple[int, str]]:
        return [(lv, tp) for tp in self.topics for lv in self.levels]

    @property
    def total_calls(self) -> int:
        return len(self.pairs) if self.calls is None else self.calls

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run that wrote the file."""
        return {"seed": self.seed, "levels": list(self.levels), "topics": list(self.topics),
                "per_call": self.per_call, "k_examples": self.k_examples}

    def schedule(self, call: int) -> tuple[int, str, int]:
        """(level, topic, visit) of call `call`; visit counts earlier calls of the same pair."""
        pairs = self.pairs
        level, topic = pairs[call % len(pairs)]
        return level, topic, call // len(pairs)


@dataclass
class CurationReport:
    """What a run did: calls made now and in total, records kept, rejections by reason."""

    out: Path
    calls_total: int
    start_call: int = 0
    next_call: int = 0
    kept: int = 0
    kept_before: int = 0
    truncated_bytes: int = 0
    rejected: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        rej = ", ".join(f"{k} {v}" for k, v in self.rejected.most_common()) or "none"
        resumed = f" (resumed at call {self.start_call}, {self.kept_before} records already there)" \
            if self.start_call else ""
        return (f"{self.out}: calls {self.next_call}/{self.calls_total}{resumed}; kept {self.kept} new problems; "
                f"rejected: {rej}")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace `path` with `obj` as JSON, crash-safely (`cuma_env.atomic_io.atomic_file`)."""
    with atomic_file(path) as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.write("\n")


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append complete lines with one write (looped only if the OS writes part of it) and fsync."""
    if not lines:
        return
    data = "".join(line if line.endswith("\n") else line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def recover_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The complete records of `path`, after truncating a torn trailing line; returns (records, bytes cut)."""
    if not path.exists():
        return [], 0
    with path.open("rb+") as fh:
        data = fh.read()
        end = data.rfind(b"\n") + 1
        cut = len(data) - end
        if cut:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    records = []
    for lineno, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CurationStateError(f"{path}:{lineno} is not a complete JSON record ({exc}); it was not written "
                                     "by an interrupted run of this tool. Fix or move the file.") from None
        if not isinstance(rec, dict):
            raise CurationStateError(f"{path}:{lineno} is not a JSON object")
        records.append(rec)
    return records, cut


class _Lock:
    def __init__(self, path: Path):
        self.path, self._fh = path, None

    def __enter__(self) -> _Lock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self._fh = self.path.open("a")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            self._fh = None
            raise CurationStateError(
                f"another run is writing {self.path.with_suffix('')} (lock {self.path} held)") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


class Curator:
    """Runs the calls of a `CurationConfig` with a generator, a seed pool and an evaluation-set index."""

    def __init__(self, config: CurationConfig, generator: Generator, seed_pool: Sequence[SeedProblem],
                 eval_index: NearDupIndex, *, pool_index: NearDupIndex | None = None, progress: bool = True):
        self.config, self.generator, self.eval_index = config, generator, eval_index
        self.progress = progress
        self.sampler = ReferenceSampler(seed_pool, seed=config.seed, k=config.k_examples,
                                        exclude=lambda text: eval_index.query(text) is not None)
        params = {**TRAIN_INDEX_DEFAULTS, "threshold": config.dup_threshold}
        if pool_index is None:
            pool_index = build_pool_index(seed_pool, **params)
        self.pool_index = pool_index  # read-only here: may be shared between runs
        self.out_index = NearDupIndex(**params, name="output")  # the output file + what this run keeps

    def _duplicate(self, text: str):
        return self.out_index.query(text) or self.pool_index.query(text)

    # -- paths
    @property
    def state_path(self) -> Path:
        return self.config.out.with_name(self.config.out.name + ".state.json")

    @property
    def rejects_path(self) -> Path:
        return self.config.out.with_name(self.config.out.name + ".rejects.jsonl")

    # -- resume
    def _resume(self, report: CurationReport) -> tuple[int, set[str], Counter]:
        cfg = self.config
        records, cut = recover_jsonl(cfg.out)
        report.truncated_bytes = cut
        state: dict[str, Any] = {}
        if self.state_path.exists():
            try:
                state = json.loads(self.state_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise CurationStateError(f"state file {self.state_path} is corrupt ({exc})") from None
            if state.get("fingerprint") != cfg.fingerprint():
                raise CurationStateError(
                    f"{cfg.out} was written with other settings {state.get('fingerprint')} than now "
                    f"{cfg.fingerprint()}; resume with the same settings or write to a new --out file")
        seeds = {rec.get("seed") for rec in records}
        if records and seeds != {cfg.seed}:
            raise CurationStateError(f"{cfg.out} holds records of seed(s) {sorted(map(str, seeds))}, not "
                                     f"{cfg.seed}; resume with the same settings or write to a new --out file")
        ids: set[str] = set()
        last_call = -1
        for rec in records:
            rid, text = str(rec.get("id")), rec.get("problem")
            if rid in ids:
                raise CurationStateError(f"{cfg.out} holds the id {rid!r} twice")
            ids.add(rid)
            if isinstance(text, str):
                self.out_index.add(rid, text)
            if isinstance(rec.get("call"), int):
                last_call = max(last_call, rec["call"])
        if int(state.get("kept", 0)) > len(records):
            raise CurationStateError(
                f"{self.state_path} records {state.get('kept')} problems written to {cfg.out}, but the file holds "
                f"{len(records)}: it was truncated, replaced or deleted by hand. Restore it, or delete the state "
                "file to start over.")
        next_call = max(int(state.get("next_call", 0)), last_call + 1)
        rejected = Counter(state.get("rejected", {}))
        report.kept_before = len(records)
        return next_call, ids, rejected

    # -- one call
    def _call(self, call: int, ids: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Completion]:
        cfg = self.config
        level, topic, visit = cfg.schedule(call)
        refs = self.sampler.draw(level, topic, visit)
        messages = build_messages(level, topic, [r.text for r in refs], cfg.per_call)
        call_seed = stable_int("call", cfg.seed, call, bits=31)
        completion = self.generator.generate(messages, seed=call_seed)
        if cfg.save_raw is not None:
            cfg.save_raw.mkdir(parents=True, exist_ok=True)
            (cfg.save_raw / f"call_{call:06d}.txt").write_text(completion.text, encoding="utf-8")
        parsed = parse_completion(completion.text, truncated=completion.truncated)
        kept: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = [{"call": call, "reason": [reason], "problem": snippet}
                                         for reason, snippet in parsed.dropped]
        for item in parsed.problems:
            text = repair_statement(item.text)
            answer = check_answer(item.answer)
            reasons = validate_problem(text, answer, cfg.validation)
            match = None
            if not reasons:
                match = self.eval_index.query(text)
                if match is not None:
                    reasons = ["eval_duplicate"]
            if not reasons:
                match = self._duplicate(text)
                if match is not None:
                    reasons = ["duplicate"]
            if reasons:
                rejects.append({"call": call, "index": item.index, "reason": reasons, "problem": text,
                                **({"match": match.describe()} if match else {})})
                continue
            rid = f"curated-s{cfg.seed}-c{call:06d}-{len(kept):02d}"
            if rid in ids:  # cannot happen for a fresh call; guards against a hand-edited file
                raise CurationStateError(f"id {rid} already in {cfg.out}")
            problem = Problem(id=rid, prompt=text, level=level, source="curated", answer=answer, meta={
                "unique_id": rid, "subject": TOPICS[topic], "topic": topic, "generator": self.generator.name,
                "seed": cfg.seed, "call": call, "call_seed": call_seed, "references": [r.id for r in refs],
                "finish_reason": completion.finish_reason})
            self.out_index.add(rid, text)
            kept.append(problem.to_json())
        return kept, rejects, completion

    # -- the run
    def run(self) -> CurationReport:
        cfg = self.config
        cfg.out.parent.mkdir(parents=True, exist_ok=True)
        report = CurationReport(cfg.out, cfg.total_calls)
        with _Lock(cfg.out.with_name(cfg.out.name + ".lock")):
            next_call, ids, rejected = self._resume(report)
            report.start_call = report.next_call = next_call
            report.rejected = Counter()
            total_kept = report.kept_before
            bar = _progress(cfg.total_calls, next_call, self.progress)
            try:
                for call in range(next_call, cfg.total_calls):
                    kept, rejects, _ = self._call(call, ids)
                    append_lines(cfg.out, [json.dumps(r, ensure_ascii=False) for r in kept])
                    ids.update(r["id"] for r in kept)
                    if cfg.save_rejects and rejects:
                        append_lines(self.rejects_path, [json.dumps(r, ensure_ascii=False) for r in rejects])
                    for r in rejects:
                        for reason in r["reason"]:
                            report.rejected[reason] += 1
                            rejected[reason] += 1
                    report.kept += len(kept)
                    total_kept += len(kept)
                    report.next_call = call + 1
                    self._write_state(call + 1, total_kept, rejected)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(kept=total_kept, rejected=sum(rejected.values()))
            finally:
                if bar is not None:
                    bar.close()
        return report

    def _write_state(self, next_call: int, kept: int, rejected: Counter) -> None:
        atomic_write_json(self.state_path, {
            "version": STATE_VERSION, "fingerprint": self.config.fingerprint(), "next_call": next_call,
            "kept": kept, "rejected": dict(rejected), "generator": self.generator.describe(),
            "out": str(self.config.out)})


def build_pool_index(seed_pool: Sequence[SeedProblem], **kwargs) -> NearDupIndex:
    """The near-duplicate index of a seed pool (keys `pool:<id>`); keyword arguments override the defaults."""
    index = NearDupIndex(**{**TRAIN_INDEX_DEFAULTS, "name": "pool", **kwargs})
    for p in seed_pool:
        index.add(f"pool:{p.id}", p.text)
    return index


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc="curate", unit="call", dynamic_ncols=True)


def curate(config: CurationConfig, generator: Generator, *, seed_pool: Sequence[SeedProblem] | None = None,
           eval_index: NearDupIndex | None = None, data_dir: str | os.PathLike[str] | None = None,
           progress: bool = True) -> CurationReport:
    """Run (or continue) a curation: loads the MATH seed pool and the evaluation index when not given."""
    from .data import load_seed_pool
    from .dedup import build_eval_index

    if eval_index is None:
        eval_index = build_eval_index(data_dir)
    if seed_pool is None:
        seed_pool = load_seed_pool(data_dir=data_dir)
    return Curator(config, generator, seed_pool, eval_index, progress=progress).run()
