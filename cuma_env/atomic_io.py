"""Crash-safe file replacement: a write either lands whole or not at all (also under `kill -9`).

Used by checkpoints, the curation state file and calibration outputs: write to a temporary file in the
same folder, flush and fsync it, rename it over the final name, then fsync the folder so the rename is
durable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in `folder` durable (best effort: some filesystems refuse directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A handle to a temporary file (`.<name>.tmp-*` beside `path`) that replaces `path` on success and is
    removed on error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def build_directory(target: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Build a directory whole or not at all: `build(staging)` fills a `.building-<name>-*` sibling, which is
    then renamed over `target` (an older `target` is first moved aside, so a reader never sees a mix). A
    failed build leaves nothing; the staging folders of builds that died are removed first. Callers hold a
    lock per target when several processes may build it."""
    import shutil

    target = Path(target)
    for stale in target.parent.glob(f".building-{target.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        build(staging)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".retired-{target.name}-", dir=target.parent))
            os.replace(target, retired / "old")
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
