"""Repository-wide pytest fixtures: where the benchmark data lives.

Tests that read real data take the `data_dir` fixture (the folder) or `data_file` (one file in it). Without
the data they skip with the reason, except in CI (CI=true), where missing data is an error: a green run must
not hide skipped data tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


def _data_dir() -> Path:
    return Path(os.environ.get("CUMA_DATA_DIR") or REPO.parent / "shared" / "data").resolve()


if os.environ.get("CUMA_DATA_DIR"):  # absolute, so subprocesses started with another cwd find it too
    os.environ["CUMA_DATA_DIR"] = str(_data_dir())


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "math" / "math500_test.jsonl").is_file():
        _missing(f"benchmark data not found under {path}; set CUMA_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def data_file(data_dir):
    """`data_file("peer/x.jsonl")`: that file's path; a missing file skips (fails in CI) like missing data."""

    def find(relative: str) -> Path:
        path = data_dir / relative
        if not path.exists():
            _missing(f"{path} not found; set CUMA_DATA_DIR")
        return path

    return find
