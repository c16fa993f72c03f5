"""The files curation reads: the seed pool (reference examples) and the evaluation sets (never to be copied).

Files are found through an explicit `data_dir` argument or the `CUMA_DATA_DIR` environment variable. A missing
file is one `DataFileMissing` error that names the path looked at and how to provide it. The benchmark files
and the MATH seed pool are read by the environment's loaders (`cuma_env.datasets.load_problems`, cached), so
curation and training see the same records; only user files (`--seed-pool`, extra sets) are read here.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cuma_env import datasets
from cuma_env.datasets import DATA_DIR_ENV, DataFileNotFoundError, folder_list, read_jsonl
from cuma_env.problems import LEVELS
from cuma_env.tasks import eval_datasets, get_dataset

SEED_POOL_DATASET = "math"  # the `cuma_env.datasets` name of the MATH 12k training pool


def eval_sets() -> tuple[str, ...]:
    """The dataset names of the evaluation sets generated problems must never copy: every file-backed bench's
    (`cuma_env.tasks`; MATH-500, GSM8K test, AIME24, AMC23, and those of the tasks you add)."""
    return tuple(eval_datasets())


class DataFileMissing(DataFileNotFoundError):
    """A data file (or the data folder) is not where curation looked for it (a `cuma_env` data error)."""


@contextlib.contextmanager
def _as_missing() -> Iterator[None]:
    """`cuma_env.datasets`' missing-file errors as `DataFileMissing` (same message)."""
    try:
        yield
    except DataFileMissing:
        raise
    except DataFileNotFoundError as exc:
        raise DataFileMissing(str(exc)) from None


@dataclass(frozen=True)
class SeedProblem:
    """One reference problem from the seed pool."""

    id: str
    text: str
    level: int | None
    subject: str | None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """`data_dir` if given, else `$CUMA_DATA_DIR`; one clear error if neither names an existing folder."""
    if data_dir is None and not os.environ.get(DATA_DIR_ENV):
        raise DataFileMissing(
            f"no data folder given: pass --data-dir (or data_dir=) or set {DATA_DIR_ENV} to the folder that "
            f"holds {folder_list()}")
    path = datasets.resolve_data_dir(data_dir)
    if not path.is_dir():
        raise DataFileMissing(f"data folder {str(path)!r} does not exist; pass --data-dir (or data_dir=) or set "
                              f"{DATA_DIR_ENV} to the folder that holds {folder_list()}")
    return path


def data_file(relative: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Absolute path of a data file; `DataFileMissing` names the path looked at and `CUMA_DATA_DIR`."""
    resolve_data_dir(data_dir)  # the folder itself first (its own message)
    with _as_missing():
        return datasets.data_file(relative, data_dir)


def _load_problems(name: str, data_dir: str | os.PathLike[str] | None) -> list[Any]:
    resolve_data_dir(data_dir)
    with _as_missing():
        return datasets.load_problems(name, data_dir)


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file; a bad line is an error naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise DataFileMissing(f"data file not found: {str(path)!r}")
    for number, record in enumerate(read_jsonl(path), 1):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {number}: expected a JSON object")
        yield record


def _text_of(record: dict[str, Any], fields: Sequence[str]) -> str | None:
    for name in fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def load_seed_pool(path: str | os.PathLike[str] | None = None,
                   data_dir: str | os.PathLike[str] | None = None) -> list[SeedProblem]:
    """Reference problems: any JSONL with `problem` (or `question`/`prompt`) and an int `level`.

    Default: the MATH 12k training pool under the data folder (`cuma_env.datasets`' `math`). Records without a
    level 1-5 are skipped (they cannot serve as examples of a stated level).
    """
    if path is None:
        return [SeedProblem(p.id, p.prompt, p.level, p.meta.get("subject"))
                for p in _load_problems(SEED_POOL_DATASET, data_dir) if p.level in LEVELS]
    file = Path(path)
    if not file.is_file():
        raise DataFileMissing(f"seed pool not found: {str(file)!r}; pass --seed-pool FILE or set {DATA_DIR_ENV}")
    pool = []
    for i, rec in enumerate(iter_jsonl(file)):
        text = _text_of(rec, ("problem", "question", "prompt"))
        level = rec.get("level")
        if text is None or not isinstance(level, int) or level not in LEVELS:
            continue
        rid = rec.get("unique_id") or rec.get("id") or f"{file.stem}:{i}"
        subject = rec.get("subject") or rec.get("type") or rec.get("topic")
        pool.append(SeedProblem(str(rid), text, level, subject if isinstance(subject, str) else None))
    if not pool:
        raise ValueError(f"seed pool {str(file)!r} has no records with a `problem` and a level 1-5")
    return pool


def load_eval_texts(data_dir: str | os.PathLike[str] | None = None,
                    names: Sequence[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    """{benchmark name: [(id, problem text), ...]} for the evaluation sets (default: all of `eval_sets()`).

    The loaders' ids are `<id_prefix><record id or line index>`; curation's keys are `<name>:<record id or index>`.
    """
    known = eval_sets()
    out: dict[str, list[tuple[str, str]]] = {}
    for name in names if names is not None else known:
        if name not in known:
            raise KeyError(f"unknown evaluation set {name!r}; known: {sorted(known)}")
        prefix = get_dataset(name).id_prefix
        out[name] = [(f"{name}:{p.id.removeprefix(prefix)}", p.prompt)
                     for p in _load_problems(name, data_dir) if p.prompt.strip()]
    return out


def load_extra_texts(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """[(id, text)] of any JSONL file with `problem`/`question`/`prompt` (extra sets to keep out of the output)."""
    file = Path(path)
    items = []
    for i, rec in enumerate(iter_jsonl(file)):
        text = _text_of(rec, ("problem", "question", "prompt"))
        if text is not None:
            items.append((f"{file.stem}:{rec.get('unique_id', rec.get('id', i))}", text))
    return items
