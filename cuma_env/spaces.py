"""Text spaces that truly contain math: LaTeX, unicode and newlines included.

Gymnasium's `Text` accepts only characters of its charset (alphanumerics by default), which would reject
every `\\frac{1}{2}`. `MathText` samples from printable ASCII (LaTeX's alphabet) but accepts any string
within its length bounds, since real problems and completions carry unicode (degrees, dashes, accents).
"""

from __future__ import annotations

import string
from typing import Any

from gymnasium import spaces

PRINTABLE = "".join(c for c in string.printable if c not in "\x0b\x0c\r")


class MathText(spaces.Text):
    def __init__(self, max_length: int, *, min_length: int = 0, seed: Any = None):
        super().__init__(max_length, min_length=min_length, charset=PRINTABLE, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"MathText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, MathText) and self.min_length == other.min_length
                and self.max_length == other.max_length)


def group_action_space(group_size: int, max_completion_chars: int) -> spaces.Tuple:
    """The action of one step: the whole group of completions, one string each (empty allowed)."""
    return spaces.Tuple([MathText(max_completion_chars) for _ in range(group_size)])


class Completions(tuple):
    """A group of completion strings that may carry per-response token statistics.

    It is a plain tuple of `str` (so it lies in the action space and passes through any wrapper) with an
    extra `token_stats` attribute for rewards that need the policy's logits, e.g. `self_certainty`.
    """

    token_stats: tuple[float, ...] | None

    def __new__(cls, texts, token_stats=None):
        obj = super().__new__(cls, texts)
        obj.token_stats = None if token_stats is None else tuple(float(v) for v in token_stats)
        return obj
