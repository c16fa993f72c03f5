"""Repository-wide pytest fixtures: where the benchmark data lives.

Tests that read real data take the `data_dir` fixture. Without data they skip with the reason, except in
CI (CI=true), where missing data is an error: a green run must not hide skipped data tests.
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


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _data_dir()
    if not (path / "math" / "math500_test.jsonl").is_file():
        message = f"benchmark data not found under {path}; set CUMA_DATA_DIR"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return path
