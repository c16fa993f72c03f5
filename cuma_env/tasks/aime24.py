"""AIME 2024: 30 problems, evaluation only. File `aime24/test.jsonl` (the competition layout: `id`, `problem`,
`answer`); answers are integers 0-999, written with leading zeros in the file ("025" is 25)."""

from __future__ import annotations

from cuma_env.tasks.competition import competition_dataset
from cuma_env.tasks.spec import Task

TEST = competition_dataset("aime24", "aime24/test.jsonl", "aime24", strip_zeros=True)

TASK = Task("CuMa-AIME24-v0", "AIME 2024 (30 problems, evaluation only)", {"test": TEST}, levelled=False,
            bench="aime24")
