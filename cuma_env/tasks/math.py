"""MATH (Hendrycks et al.): the 12k PRM800K training pool by level, and MATH-500 as its test split.

Files under the data folder: `math/prm800k_train_12k.jsonl` and `math/math500_test.jsonl`, one JSON object a
line with `problem`, `answer`, `level` (1-5), `subject` and `unique_id` (the problem's id).
"""

from __future__ import annotations

from cuma_env.problems import Problem
from cuma_env.tasks.spec import Dataset, Task


def math_problem(record: dict, source: str) -> Problem:
    return Problem(id=record["unique_id"], prompt=record["problem"], level=record.get("level"), source=source,
                   answer=record.get("answer"), meta={"subject": record.get("subject")})


def _pool_problem(record: dict, index: int) -> Problem | None:
    # Two MATH records have "Level ?" (level null); they cannot sit in a levelled curriculum.
    return math_problem(record, "math") if record.get("level") is not None else None


POOL = Dataset("math", "math/prm800k_train_12k.jsonl", _pool_problem,
               skipped="has a difficulty level (level null)")
MATH500 = Dataset("math500", "math/math500_test.jsonl", lambda record, index: math_problem(record, "math500"))

TASK = Task("CuMa-Math-v0", "MATH: the 12k PRM800K training pool by level; test split = MATH-500",
            {"train": POOL, "test": MATH500}, bench="math500")
