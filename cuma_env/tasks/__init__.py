"""Tasks: one module per task says all there is to it (its files and reader, splits, template, bench), and
one registry (`registry.TASKS`) is what the catalog, `gym.make`, `cuma eval --bench`, curation's never-copy
sets and the data errors read, so a new task touches no other file.

    # my_words.py: GSM8K-like data of your own, one file
    from pathlib import Path
    from cuma_env.tasks import Task, register
    from cuma_env.tasks.gsm8k import gsm8k_dataset

    TEST = gsm8k_dataset("words_test", str(Path(__file__).with_name("words.jsonl")), "words", "test")
    TASK = Task("CuMa-Words-v0", "my word problems", {"test": TEST}, levelled=False, bench="words")
    register(TASK)   # optional: lets gym.make("my_words:CuMa-Words-v0") import and register it

Name it as `my_words:TASK` wherever a task is named (`get_task`, `make_source`, `env.id`, `cuma eval --bench`),
or ship it in a distribution with an entry point `[cuma.tasks] words = "my_words:TASK"`. docs/extending.md.
"""

from __future__ import annotations

from cuma_env.tasks import aime24, amc23, arith, gsm8k, math
from cuma_env.tasks.registry import (
    DATASETS,
    ENTRY_POINT_GROUP,
    TASKS,
    all_tasks,
    bench_names,
    data_folders,
    dataset_name,
    eval_datasets,
    find_bench,
    get_dataset,
    get_task,
    load_plugins,
    register,
    unregister,
)
from cuma_env.tasks.spec import SPLITS, Dataset, Task, json_type

BUILTIN: tuple[Task, ...] = (math.TASK, gsm8k.TASK, arith.TASK, aime24.TASK, amc23.TASK)  # the catalog's order
for _task in BUILTIN:
    register(_task, where=f"built-in task {_task.env_id}")

__all__ = ["BUILTIN", "DATASETS", "ENTRY_POINT_GROUP", "SPLITS", "TASKS", "Dataset", "Task", "all_tasks",
           "bench_names", "data_folders", "dataset_name", "eval_datasets", "find_bench", "get_dataset", "get_task",
           "json_type", "load_plugins", "register", "unregister"]
