"""The competition layout of AIME24 and AMC23: `id`, `problem` and `answer` (a string or a number) per record.

`competition_dataset` reads any file in this layout (`competition_reader` is its `Dataset.record`); a problem's
id is `<source>/<id>` (the line index when a record has no `id`).
"""

from __future__ import annotations

from collections.abc import Callable

from cuma_env.problems import Problem
from cuma_env.tasks.spec import Dataset, json_type


def competition_reader(source: str, *, strip_zeros: bool = False) -> Callable[[dict, int], Problem]:
    """`strip_zeros`: digit-string answers lose leading zeros (AIME's "025" -> "25")."""
    def record(rec: dict, index: int) -> Problem:
        answer = rec["answer"]
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            raise ValueError(f"field 'answer' must be a string or a number, got {json_type(answer)}")
        if isinstance(answer, float) and answer.is_integer():
            answer = int(answer)
        if strip_zeros and isinstance(answer, str) and answer.isdigit():
            answer = str(int(answer))
        return Problem(id=f"{source}/{rec.get('id', index)}", prompt=rec["problem"], level=None, source=source,
                       answer=str(answer))

    return record


def competition_dataset(name: str, path: str, source: str, *, strip_zeros: bool = False) -> Dataset:
    """A file in the competition layout as a `Dataset` whose problem ids are `<source>/<id>`."""
    return Dataset(name, path, competition_reader(source, strip_zeros=strip_zeros), id_prefix=f"{source}/")
