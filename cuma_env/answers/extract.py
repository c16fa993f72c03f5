"""Final-answer extraction from a model completion, in linear time.

A completion cut off by the token limit inside its final answer has no answer (None, whatever the
fallback setting): its *last* `\\boxed`/`\\fbox` command is unclosed, i.e. it opens a `{` that no `}` closes
(escaped `\\{`/`\\}` do not count, as in all brace matching here), or nothing but spaces follows the command.
`so the answer is \\boxed{12` and `\\boxed{3} ... \\boxed{\\frac{1}{` give None: the fragment never votes and
no number from the working is taken instead. An earlier unclosed box before a closed last one
(`30 + \\boxed{1 = 81. \\boxed{81}`) is malformed working, not a cut answer: rule 1 reads the last box
(docs/grading.md).

Otherwise, in order of precedence (the first rule that finds something wins):
1. the last `\\boxed{...}` / `\\fbox{...}` with balanced braces (or `\\boxed 5`);
2. the last answer phrase: "final answer is / Final Answer:", "the answer is", "answer:", or GSM8K's
   `#### 42`; the text right after it, up to the end of the sentence, with `$..$` removed;
3. fallback (only when `last_number_fallback=True`): whichever comes last of the last inline math span
   (`$..$`, `\\(..\\)`, `\\[..\\]`; for `a = b` its last right-hand side) and the last number (with
   thousands separators, decimals or a simple fraction like `2/3`; its minus may be U+2212 or an en dash).
The result has outer `$`, `\\(..\\)`, `\\[..\\]` and a trailing period removed; None when nothing is found.
No regex here can backtrack catastrophically and brace matching is an iterative scan, so a megabyte of
text or 100k nested braces return in milliseconds.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from typing import TypeVar

from .normalize import _close_brace, strip_wrappers

T = TypeVar("T")


def _last(items: Iterator[T]) -> T | None:
    """The last item of an iterator, or None: one pass, nothing kept but the last."""
    kept = deque(items, maxlen=1)
    return kept[0] if kept else None


_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_PHRASE = re.compile(
    r"final\s+answer(?:\s+is)?\s*(?:[:：]|\bis\b)?|the\s+answer\s+is\s*:?|\banswer\s*[:：]|####",
    re.IGNORECASE,
)
_MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\$((?:\\\$|[^$])+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_NUMBER = re.compile(  # a minus may be U+2212 or an en dash, as models print it
    r"(?<![\w.])[-\u2212\u2013]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)(?![\d])"
)
_LEAD = re.compile(r"^[\s:：*]*(?:\\?[\"'“”])?\s*")  # also an escaped quote: is \"$12$\"
_JOINT = re.compile(r"\s*(?:,|;|and|or|,\s*and)\s*")
_LAST_EQ = re.compile(r"(?<![<>!=\\])=(?!=)")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|\n")
_MAX_BOX_TRIES = 6
_BARE_TOKEN = re.compile(r"[^\s$]+")
_SEPARATOR = re.compile(
    r"(?:\s|[,;$&]|\\[()\[\]]|\\q?quad|\\text\{\s*(?:and|or)\s*\}|\band\b|\bor\b|\\\\){0,20}"
)
_TAIL = 4000
_BLANKS = re.compile(r"[ \t]*")


def ends_inside_box(text: str) -> bool:
    """Whether the text's last box is unclosed: cut off by the token limit inside its final answer.

    The last `\\boxed`/`\\fbox` command counts, not an earlier one: a stray unclosed box before a closed final
    one is malformed working, not a cut answer. Linear: one scan for the last command, one brace scan after it."""
    last = _last(_BOX.finditer(text))
    if last is None:
        return False
    i = _BLANKS.match(text, last.end()).end()
    if i < len(text) and text[i] == "{":
        return _close_brace(text, i) < 0
    return not text[i:].strip()  # `\boxed` with nothing after it


def _box_at(text: str, start: int) -> tuple[str, int] | None:
    """Content and end index of the box whose command ends at `start`."""
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i < len(text) and text[i] == "{":
        end = _close_brace(text, i)
        if end > i + 1:
            return text[i + 1:end], end + 1
    elif start < i < len(text):  # `\boxed 5`
        m = _BARE_TOKEN.match(text, i)
        if m:
            return m.group(), m.end()
    return None


def _last_boxed(text: str) -> tuple[str, int] | None:
    """Content of the last well-formed box and where it ends; adjacent boxes (`\boxed{1} and \boxed{2}`)
    are joined into one list answer, as a model that boxes each solution means the set of them."""
    matches = list(_BOX.finditer(text))[-_MAX_BOX_TRIES:]
    found: list[tuple[int, str, int]] = []
    for m in reversed(matches):
        box = _box_at(text, m.end())
        if box is None:
            if found:
                break
            continue
        if found and not _SEPARATOR.fullmatch(text[box[1]:found[-1][0]]):
            break
        found.append((m.start(), box[0], box[1]))
    if not found:
        return None
    contents = list(dict.fromkeys(c.strip() for _, c, _ in reversed(found)))
    return ", ".join(contents), found[0][2]


def _clean(ans: str | None) -> str | None:
    if ans is None:
        return None
    ans = strip_wrappers(ans.strip())
    for _ in range(3):
        stripped = ans.rstrip().rstrip(".").rstrip().rstrip('"”').rstrip("\\").rstrip()
        if stripped.endswith("$") and stripped.count("$") == 1:
            stripped = stripped[:-1].rstrip()
        ans = strip_wrappers(stripped)
    return ans or None


def _after_last_equals(expr: str) -> str:
    parts = _LAST_EQ.split(expr)
    return parts[-1].strip() if len(parts) > 1 and parts[-1].strip() else expr


def _from_phrase(seg: str, phrase: str) -> str | None:
    """The answer in the text that follows an answer phrase."""
    seg = _LEAD.sub("", seg)
    m = _MATH_SPAN.match(seg)
    if m:  # "$12$ and $13$" -> "12, 13"
        spans = [next(g for g in m.groups() if g is not None)]
        while len(spans) < 10:
            joint = _JOINT.match(seg, m.end())
            m = _MATH_SPAN.match(seg, joint.end()) if joint else None
            if not m:
                break
            spans.append(next(g for g in m.groups() if g is not None))
        return ", ".join(x.strip() for x in spans)
    end = _SENTENCE_END.search(seg)
    seg = seg[: end.start()] if end else seg
    if not phrase.lower().rstrip(" :").endswith("is") and not phrase.startswith("#"):
        parts = re.split(r"\s(?:is|are|was|equals|=)\s", seg)
        if len(parts) > 1:
            return _from_phrase(parts[-1], "is")
    m = _MATH_SPAN.search(seg)
    if m:
        return next(g for g in m.groups() if g is not None)
    words = re.findall(r"[A-Za-z]{2,}", seg)
    if len(words) >= 3:  # a sentence ("Jane started 3 hours ago"): keep its last number
        numbers = _NUMBER.findall(seg)
        return numbers[-1] if numbers else None
    return seg.strip() or None


def _last_phrase(text: str, after: int = 0, final_only: bool = False) -> str | None:
    last = None
    for m in _PHRASE.finditer(text, after):
        if not final_only or m.group().lower().startswith("final"):
            last = m
    if last is None:
        return None
    return _from_phrase(text[last.end(): last.end() + 1000], last.group())


def _fallback(text: str) -> str | None:
    tail_start = max(0, len(text) - _TAIL)
    tail = text[tail_start:]
    span = _last(_MATH_SPAN.finditer(tail))
    number = _last(_NUMBER.finditer(tail))
    if number is None and span is None and tail_start > 0:
        number = _last(_NUMBER.finditer(text))
        tail, tail_start = text, 0
    if span is not None and (number is None or span.end() >= number.end()):
        content = next(g for g in span.groups() if g is not None)
        return _after_last_equals(content.strip())
    return number.group() if number is not None else None


def extract_answer(text: str, *, last_number_fallback: bool = True) -> str | None:
    """The final answer in a completion (see the module docstring for the rules), or None."""
    if not isinstance(text, str) or not text.strip() or ends_inside_box(text):
        return None
    box = _last_boxed(text)
    if box is not None:
        # "... \boxed{255} ... Final Answer: The final answer is $10,455$": the later final answer wins
        ans = _clean(_last_phrase(text, after=box[1], final_only=True)) or _clean(box[0])
        if ans:
            return ans
    ans = _clean(_last_phrase(text))
    if ans:
        return ans
    if last_number_fallback:
        return _clean(_fallback(text))
    return None
