"""Benchmark and training pools read from local JSONL files (nothing is downloaded).

Files are found under an explicit `data_dir` argument or the `CUMA_DATA_DIR` environment variable, in the
layout of the project's shared data folder (`math/`, `gsm8k/`, `aime24/`, `amc23/`). A missing file is one
`DataFileNotFoundError` that names the path it looked at and how to point the code elsewhere.
A malformed line (bad JSON, not an object, a missing or mistyped field) is one `ValueError`
`<file>:<line>: <what is wrong>`, and a file that yields no problems is a `ValueError` naming it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from cuma_env.problems import PoolSource, Problem

DATA_DIR_ENV = "CUMA_DATA_DIR"


class DataFileNotFoundError(FileNotFoundError):
    """A data file the caller asked for is not where it was looked for."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else `$CUMA_DATA_DIR`; one clear error when neither is given."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        raise DataFileNotFoundError(
            f"no data directory given: pass data_dir=... or set {DATA_DIR_ENV} to the folder holding "
            "math/, gsm8k/, aime24/ and amc23/ (the procedural CuMa-Arith-v0 env needs no data)")
    return Path(chosen).expanduser()


def data_file(relative: str, data_dir: str | os.PathLike | None = None) -> Path:
    path = resolve_data_dir(data_dir) / relative
    if not path.is_file():
        raise DataFileNotFoundError(
            f"data file not found: {path} (looked under {'data_dir' if data_dir is not None else DATA_DIR_ENV}"
            f"={resolve_data_dir(data_dir)}); set {DATA_DIR_ENV} or pass data_dir= to the folder that holds "
            f"{relative}")
    return path


def read_jsonl(path: Path) -> Iterator[dict]:
    """The records of a JSON-lines file (blank lines skipped); a bad line is one `ValueError` `<file>:<line>: ...`."""
    return (record for _, record in numbered_records(path))


def numbered_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) per non-blank line; bad JSON or bytes are one `ValueError` naming the line."""
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.pos + 1})"
                                         ) from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}:{_first_undecodable_line(path)}: not UTF-8 text ({exc.reason})") from None


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "true/false",
               type(None): "null"}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _record_error(path: Path, number: int, record: object, exc: Exception) -> ValueError:
    """The one-line `ValueError` for a record its reader could not turn into a problem (the slow path only)."""
    if not isinstance(record, dict):
        why = f"expected a JSON object, got {_json_type(record)}"
    elif isinstance(exc, KeyError):
        why = f"missing field {exc.args[0]!r}"
    else:
        why = str(exc)
    return ValueError(f"{path}:{number}: {why}")


def _first_undecodable_line(path: Path) -> int | str:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return "?"


def _read_problems(path: Path, build: Callable[[dict, int], Problem | None], *, skipped: str = "") -> list[Problem]:
    """`build(record, index)` for each record in file order (None drops it); a bad line or a file that yields
    no problems is one `ValueError` naming the file (and line, and field or JSON error)."""
    problems: list[Problem] = []
    count = 0
    for count, (number, record) in enumerate(numbered_records(path), 1):
        try:
            problem = build(record, count - 1)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise _record_error(path, number, record, exc) from None
        if problem is not None:
            problems.append(problem)
    if not problems:
        raise ValueError(f"{path}: no problems in this file: "
                         + (f"none of its {count} records {skipped}" if count and skipped else
                            "it is empty or holds only blank lines"))
    return problems


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final_answer(solution: str) -> str:
    """The number after `####`, thousands separators removed (`#### 1,200` -> `1200`)."""
    try:
        match = _GSM8K_FINAL.search(solution)
    except TypeError:
        raise ValueError(f"field 'answer' must be a string ending in '#### <answer>', got "
                         f"{_json_type(solution)}") from None
    if not match:
        raise ValueError(f"GSM8K solution without a '#### <answer>' line: {solution[-80:]!r}")
    return match.group(1).replace(",", "").strip()


def _math_problem(record: dict, source: str) -> Problem:
    return Problem(id=record["unique_id"], prompt=record["problem"], level=record.get("level"), source=source,
                   answer=record.get("answer"), meta={"subject": record.get("subject")})


def _gsm8k_problem(record: dict, index: int, split: str) -> Problem:
    return Problem(id=f"gsm8k/{split}/{index}", prompt=record["question"], level=None, source="gsm8k",
                   answer=gsm8k_final_answer(record["answer"]))


def _competition_problem(record: dict, index: int, source: str) -> Problem:
    answer = record["answer"]
    if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
        raise ValueError(f"field 'answer' must be a string or a number, got {_json_type(answer)}")
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if source == "aime24" and isinstance(answer, str) and answer.isdigit():
        answer = str(int(answer))  # "025" -> "25"
    return Problem(id=f"{source}/{record.get('id', index)}", prompt=record["problem"], level=None,
                   source=source, answer=str(answer))


def _math_pool_problem(record: dict, index: int) -> Problem | None:
    # Two MATH records have "Level ?" (level null); they cannot sit in a levelled curriculum.
    return _math_problem(record, "math") if record.get("level") is not None else None


def _load_math_pool(path: Path) -> list[Problem]:
    return _read_problems(path, _math_pool_problem, skipped="has a difficulty level (level null)")


# name -> (relative path, record reader)
_DATASETS: dict[str, tuple[str, Callable[[Path], list[Problem]]]] = {
    "math": ("math/prm800k_train_12k.jsonl", _load_math_pool),
    "math500": ("math/math500_test.jsonl", lambda p: _read_problems(p, lambda r, i: _math_problem(r, "math500"))),
    "gsm8k_train": ("gsm8k/train.jsonl", lambda p: _read_problems(p, lambda r, i: _gsm8k_problem(r, i, "train"))),
    "gsm8k_test": ("gsm8k/test.jsonl", lambda p: _read_problems(p, lambda r, i: _gsm8k_problem(r, i, "test"))),
    "aime24": ("aime24/test.jsonl", lambda p: _read_problems(p, lambda r, i: _competition_problem(r, i, "aime24"))),
    "amc23": ("amc23/test.jsonl", lambda p: _read_problems(p, lambda r, i: _competition_problem(r, i, "amc23"))),
}
DATASETS: tuple[str, ...] = tuple(_DATASETS)


@lru_cache(maxsize=16)
def _load_cached(name: str, path: Path, mtime: float) -> tuple[Problem, ...]:
    return tuple(_DATASETS[name][1](path))


def load_problems(name: str, data_dir: str | os.PathLike | None = None) -> list[Problem]:
    """All problems of one named dataset (see `DATASETS`), in file order."""
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    path = data_file(_DATASETS[name][0], data_dir).resolve()
    return list(_load_cached(name, path, path.stat().st_mtime))


def load_source(name: str, data_dir: str | os.PathLike | None = None,
                levels: Sequence[int] | None = None) -> PoolSource:
    """A named dataset as a `PoolSource`, optionally restricted to some levels (MATH pools only)."""
    source = PoolSource(name, load_problems(name, data_dir))
    return source if levels is None else source.filter_levels(levels)
