"""Moving finished study cells between study directories, so that one study can run on several machines or
across several sessions of one machine (each cell is trained once, anywhere):

    cuma study --out runs/study --export shared/study-cells     # this machine's finished cells, results only
    cuma study --out runs/study --merge shared/study-cells      # take them in, then run what is left
    cuma study --out runs/study --compare docs/results/study    # a re-run elsewhere: the same per-problem results?

A finished cell travels as its `cell.json` (what it is) and `per_problem.json` (its result, which holds the
cell's spec); its run directory (checkpoints, model) stays where it trained. A merged cell is skipped by
`cuma study` as if it had finished here; one whose spec differs from the plan's is refused by the same check
as a local one (`DifferentCellError`).
"""

from __future__ import annotations

import json
from pathlib import Path

from agents.experiments.study_cells import RESULT_FILE, SPEC_FILE
from cuma_env.atomic_io import atomic_file


def finished_cells(study_dir: str | Path) -> list[Path]:
    """The finished cells' directories under `study_dir`, relative to it (`cells/<world>/<cell>`)."""
    root = Path(study_dir)
    return sorted(p.parent.relative_to(root) for p in (root / "cells").glob(f"*/*/{RESULT_FILE}"))


def copy_finished_cells(src: str | Path, dest: str | Path) -> tuple[int, int]:
    """Copy every finished cell of `src` that `dest` has not finished: (copied, already there). A cell that
    `dest` finished with another result is an error (the two directories ran different studies)."""
    src, dest = Path(src), Path(dest)
    if not (src / "cells").is_dir():
        raise FileNotFoundError(f"{src} holds no study cells (no {src / 'cells'} directory)")
    copied = present = 0
    for cell in finished_cells(src):
        target = dest / cell
        if (target / RESULT_FILE).is_file():
            if json.loads((target / RESULT_FILE).read_text())["spec"] != \
                    json.loads((src / cell / RESULT_FILE).read_text())["spec"]:
                raise ValueError(f"{cell} is finished in both {src} and {dest} with different configurations")
            present += 1
            continue
        target.mkdir(parents=True, exist_ok=True)
        for name in (SPEC_FILE, RESULT_FILE):  # the result last: a cell with it is finished
            if (src / cell / name).is_file():
                with atomic_file(target / name, "wb", encoding=None) as out:
                    out.write((src / cell / name).read_bytes())
        copied += 1
    return copied, present


def compare_cells(mine: str | Path, theirs: str | Path) -> dict[str, list[str]]:
    """The cells finished in both directories, split into those whose per-problem greedy results (and samples
    counted) are identical and those that differ; a reproduction of a study on another machine. The cells
    finished in only one of them are listed too (`only_mine`, `only_theirs`), so a partial re-run says how
    much of the study it covers."""
    mine, theirs = Path(mine), Path(theirs)
    ours, their_cells = set(finished_cells(mine)), set(finished_cells(theirs))
    both = sorted(ours & their_cells)
    same, different = [], []
    for cell in both:
        a, b = (json.loads((d / cell / RESULT_FILE).read_text()) for d in (mine, theirs))
        key = ("spec", "levels", "samples")
        (same if all(a.get(k) == b.get(k) for k in key) else different).append(str(cell.relative_to("cells")))
    only = {name: [str(c.relative_to("cells")) for c in sorted(cells)]
            for name, cells in (("only_mine", ours - their_cells), ("only_theirs", their_cells - ours))}
    return {"same": same, "different": different, **only}


__all__ = ["compare_cells", "copy_finished_cells", "finished_cells"]
