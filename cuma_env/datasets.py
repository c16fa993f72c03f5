"""Benchmark and training pools read from local JSONL files (nothing is downloaded).

Which files there are, and how a record becomes a `Problem`, is each task's own module (`cuma_env.tasks`); this
module reads them all the same way. Files are found under an explicit `data_dir` argument or the
`CUMA_DATA_DIR` environment variable, in the layout of the project's shared data folder (`math/`, `gsm8k/`,
... : `cuma_env.tasks.data_folders()`), or at a dataset's absolute path. A missing file is one
`DataFileNotFoundError` that names the path it looked at and how to point the code elsewhere.
A malformed line (bad JSON, not an object, a missing or mistyped field) is one `ValueError`
`<file>:<line>: <what is wrong>`, and a file that yields no problems is a `ValueError` naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from cuma_env.problems import PoolSource, Problem
from cuma_env.tasks.registry import DATASETS, data_folders, get_dataset
from cuma_env.tasks.spec import Dataset, json_type

DATA_DIR_ENV = "CUMA_DATA_DIR"


class DataFileNotFoundError(FileNotFoundError):
    """A data file the caller asked for is not where it was looked for."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else `$CUMA_DATA_DIR`; one clear error when neither is given."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        raise DataFileNotFoundError(
            f"no data directory given: pass data_dir=... or set {DATA_DIR_ENV} to the folder holding "
            f"{folder_list()} (the procedural CuMa-Arith-v0 env needs no data)")
    return Path(chosen).expanduser()


def folder_list() -> str:
    """`math/, gsm8k/, aime24/, amc23/`: the data folder's subdirectories the registered tasks read."""
    return ", ".join(data_folders()) or "the tasks' data files"


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


def _record_error(path: Path, number: int, record: object, exc: Exception) -> ValueError:
    """The one-line `ValueError` for a record its reader could not turn into a problem (the slow path only)."""
    if not isinstance(record, dict):
        why = f"expected a JSON object, got {json_type(record)}"
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


def read_problems(path: Path, build: Callable[[dict, int], Problem | None], *, skipped: str = "") -> list[Problem]:
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


def _read_dataset(dataset: Dataset, path: Path) -> list[Problem]:
    return read_problems(path, dataset.record, skipped=dataset.skipped)


def dataset_path(dataset: Dataset, data_dir: str | os.PathLike | None = None) -> Path:
    """Where a dataset's file is: its absolute path, or its path under the data folder (checked either way)."""
    path = Path(dataset.path).expanduser()
    if not path.is_absolute():
        return data_file(dataset.path, data_dir)
    if not path.is_file():
        raise DataFileNotFoundError(f"data file not found: {path} (the absolute path of dataset {dataset.name!r})")
    return path


@lru_cache(maxsize=16)
def _load_cached(dataset: Dataset, path: Path, mtime: float) -> tuple[Problem, ...]:
    return tuple(_read_dataset(dataset, path))


def load_problems(name: str | Dataset, data_dir: str | os.PathLike | None = None) -> list[Problem]:
    """All problems of one dataset (a name in `DATASETS`, or a `cuma_env.tasks.Dataset`), in file order."""
    dataset = get_dataset(name)
    path = dataset_path(dataset, data_dir).resolve()
    return list(_load_cached(dataset, path, path.stat().st_mtime))


def load_source(name: str | Dataset, data_dir: str | os.PathLike | None = None,
                levels: Sequence[int] | None = None) -> PoolSource:
    """A dataset as a `PoolSource`, optionally restricted to some levels (MATH pools only)."""
    dataset = get_dataset(name)
    source = PoolSource(dataset.name, load_problems(dataset, data_dir))
    return source if levels is None else source.filter_levels(levels)


__all__ = ["DATASETS", "DATA_DIR_ENV", "DataFileNotFoundError", "data_file", "dataset_path", "folder_list",
           "load_problems", "load_source", "numbered_records", "read_jsonl", "read_problems", "resolve_data_dir"]
