"""GSM8K: grade-school word problems, no levels; its worked solutions end in `#### <answer>`.

Files under the data folder: `gsm8k/train.jsonl` and `gsm8k/test.jsonl`, one JSON object a line with
`question` and `answer` (the worked solution). A problem's id is `gsm8k/<split>/<line index>`.
`gsm8k_dataset` reads any file in this layout: GSM8K-like data of your own is one call of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cuma_env.problems import Problem
from cuma_env.tasks.spec import Dataset, Task, json_type

_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final_answer(solution: str) -> str:
    """The number after `####`, thousands separators removed (`#### 1,200` -> `1200`)."""
    try:
        match = _FINAL.search(solution)
    except TypeError:
        raise ValueError(f"field 'answer' must be a string ending in '#### <answer>', got "
                         f"{json_type(solution)}") from None
    if not match:
        raise ValueError(f"GSM8K solution without a '#### <answer>' line: {solution[-80:]!r}")
    return match.group(1).replace(",", "").strip()


def gsm8k_reader(source: str, split: str) -> Callable[[dict, int], Problem]:
    """A `Dataset.record` for `question` + `answer` (`... #### 42`) records; ids `<source>/<split>/<index>`."""
    def record(rec: dict, index: int) -> Problem:
        return Problem(id=f"{source}/{split}/{index}", prompt=rec["question"], level=None, source=source,
                       answer=gsm8k_final_answer(rec["answer"]))

    return record


def gsm8k_dataset(name: str, path: str, source: str, split: str) -> Dataset:
    """A file in GSM8K's layout as a `Dataset` whose problem ids are `<source>/<split>/<line index>`."""
    return Dataset(name, path, gsm8k_reader(source, split), id_prefix=f"{source}/{split}/")


TRAIN = gsm8k_dataset("gsm8k_train", "gsm8k/train.jsonl", "gsm8k", "train")
TEST = gsm8k_dataset("gsm8k_test", "gsm8k/test.jsonl", "gsm8k", "test")

TASK = Task("CuMa-GSM8K-v0", "GSM8K grade-school word problems (no levels)", {"train": TRAIN, "test": TEST},
            levelled=False, bench="gsm8k")
