"""AMC 2023: 40 problems, evaluation only. File `amc23/test.jsonl` (the competition layout: `id`, `problem`,
`answer`)."""

from __future__ import annotations

from cuma_env.tasks.competition import competition_dataset
from cuma_env.tasks.spec import Task

TEST = competition_dataset("amc23", "amc23/test.jsonl", "amc23")

TASK = Task("CuMa-AMC23-v0", "AMC 2023 (40 problems, evaluation only)", {"test": TEST}, levelled=False,
            bench="amc23")
