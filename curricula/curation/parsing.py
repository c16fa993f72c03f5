"""Reading problems out of a generator's completion, however imperfect.

`parse_completion(text, truncated=False)` tries, in order:

1. the requested tag format, `<problem>...</problem>` then `<answer>...</answer>` (tolerating missing closing
   tags when the next block shows where one ends, attributes such as `<problem id="3">`, code fences, chatter
   before and after, `<think>` blocks);
2. JSON (an array or a sequence of objects with `problem`/`question` and `answer` keys, inside code fences or
   not, with LaTeX backslashes that are not valid JSON escapes repaired, and a truncated array read up to the
   last complete object);
3. markdown / numbered text: `### Problem 3`, `**Problem 3.**`, `Question 3:`, or a `1.` / `2)` list numbered
   in sequence, with `Answer:` / `**Final answer:**` lines and `Solution:` sections (cut off, their `\\boxed{}`
   used as the answer when no answer line is given).

What cannot be a complete problem is dropped with a reason (`truncated`, `empty`), never guessed at: a block
cut by the token limit (`truncated=True` when the backend reports `finish_reason == "length"`, or a last
block without its closing tag) is dropped, and an answer that may have been cut is discarded (the problem is
kept without it). The parser never raises on any input string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

NO_ANSWER = {"", "unknown", "n/a", "na", "none", "-", "?", "not given", "not sure", "tbd", "unsure", "null"}
MAX_ANSWER_CHARS = 120


@dataclass(frozen=True)
class ParsedProblem:
    """One problem read from a completion: its 1-based position, statement, and answer (None if not given)."""

    index: int
    text: str
    answer: str | None = None


@dataclass
class ParseResult:
    """The problems found, what was dropped and why, and which format was recognised."""

    format: str  # "tags", "json", "markdown" or "none"
    problems: list[ParsedProblem] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (reason, snippet)


# ---------------------------------------------------------------------------------------------- helpers

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_FENCE_LINE = re.compile(r"^[ \t]*```[a-zA-Z]*[ \t]*$", re.M)
_OPEN = re.compile(r"<\s*problem\b[^>]*>", re.I)
_CLOSE = re.compile(r"<\s*/\s*problem\s*>", re.I)
_ANS_OPEN = re.compile(r"<\s*answer\b[^>]*>", re.I)
_ANS_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.I)
_PLAIN_ANSWER = re.compile(r"^\s*(?:[-*>]\s*)?(?:\*\*|__|\*)?\s*(?:final\s+)?answer\s*(?:\*\*|__|\*)?\s*[:：]"
                           r"\s*(?:\*\*|__)?(.*)$", re.I | re.M)
_SOLUTION_LINE = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\*\*|__|\*)?\s*(?:solution|explanation|hint|reasoning|work)s?"
                            r"\s*(?:\*\*|__|\*)?\s*(?:[:.]|$)", re.I | re.M)
_HEADING = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:problem|question|exercise)[ \t]*"
                      r"(?:#|no\.)?[ \t]*(\d{1,3})\b(.*)$", re.I)
_NUMBERED = re.compile(r"^[ \t]*(?:\*\*|__)?(\d{1,3})[.)](?:\*\*|__)?[ \t]+(.*)$")
_LEADING_LABEL = re.compile(r"^\s*(?:\*\*|__)?\s*(?:problem(?:\s+statement)?|question|statement)\s*"
                            r"(?:\*\*|__)?\s*[:.]\s*(?:\*\*|__)?\s*", re.I)
_META_LINE = re.compile(r"^\s*(?:\*\*|__)?\s*(?:level|difficulty|topic|subject)\s*(?:\*\*|__)?\s*[:=].*$",
                        re.I | re.M)
_LEVEL_TAG = re.compile(r"^\s*[(\[]\s*(?:level|difficulty)\s*:?\s*\d\s*[)\]]\s*", re.I)
_SEPARATOR = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,}|={3,})\s*$", re.M)
_CHATTER = re.compile(r"\n\s*\n\s*(?:I hope|Let me know|Feel free|These problems|These \d+|All (?:of these|the)"
                      r" problems|Each (?:of these|problem)|Enjoy|Good luck|Happy|Note:|Notes:|This set|"
                      r"I have|I've)\b.*\Z", re.S | re.I)
_BOXED = re.compile(r"\\boxed\s*\{")


def _boxed_content(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` in text (balanced braces), or None."""
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def clean_answer(raw: object) -> str | None:
    """The bare final answer: markup, math delimiters, `\\boxed{}` and placeholders removed; None if none."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        raw = str(int(raw)) if isinstance(raw, float) and raw.is_integer() else str(raw)
    if not isinstance(raw, str):
        return None
    s = raw.strip().strip("*_`").strip()
    s = re.sub(r"^(?:final\s+)?answer\s*[:：]\s*", "", s, flags=re.I).strip().strip("*_`").strip()
    boxed = _boxed_content(s)
    if boxed is not None and s.startswith(("\\boxed", "$\\boxed", "\\(\\boxed", "\\[\\boxed")):
        s = boxed.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left):len(s) - len(right)].strip()
            break
    if s.endswith(".") and not re.search(r"\b[a-zA-Z]\.[a-zA-Z]\.$", s):  # keep "p.m."
        s = s[:-1].strip()
    if s.lower() in NO_ANSWER or "\n" in s or len(s) > MAX_ANSWER_CHARS:
        return None
    return s


def clean_statement(text: str) -> str:
    """A problem statement without labels, level tags, fences, separators and trailing whitespace."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _FENCE_LINE.sub("", text)
    text = _SEPARATOR.sub("", text)
    text = _META_LINE.sub("", text)
    text = text.strip()
    for _ in range(2):
        text = _LEADING_LABEL.sub("", text, count=1)
        text = _LEVEL_TAG.sub("", text, count=1)
    text = re.sub(r"^(?:\*\*|__)\s*|\s*(?:\*\*|__)$", "", text.strip())
    lines = [line.rstrip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip()


def _preprocess(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _THINK.sub("", text)
    if re.search(r"</think>", text, re.I):  # template opened the think block in the prompt
        text = re.split(r"</think>", text, flags=re.I)[-1]
    m = re.search(r"<think>", text, re.I)
    if m:  # an unclosed think block: the rest is reasoning cut off by the token limit
        text = text[:m.start()]
    return text


def _snippet(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------------------------------------- formats

def _parse_tags(text: str, truncated: bool) -> ParseResult:
    result = ParseResult("tags")
    opens = list(_OPEN.finditer(text))
    for i, m in enumerate(opens):
        last = i + 1 == len(opens)
        region = text[m.end():opens[i + 1].start() if not last else len(text)]
        close = _CLOSE.search(region)
        aopen = _ANS_OPEN.search(region)
        if close and (aopen is None or close.start() < aopen.start()):
            stmt, rest = region[:close.start()], region[close.end():]
        elif aopen is not None:  # missing </problem>, but the answer shows where the statement ends
            stmt, rest = region[:aopen.start()], region[aopen.start():]
        elif not last:  # missing </problem>, the next <problem> shows where it ends
            stmt, rest = region, ""
        else:
            result.dropped.append(("truncated", _snippet(region)))
            continue
        stmt = clean_statement(stmt)
        if not stmt:
            result.dropped.append(("empty", _snippet(region)))
            continue
        result.problems.append(ParsedProblem(i + 1, stmt, _tag_answer(rest, last, truncated)))
    return result


def _tag_answer(rest: str, last: bool, truncated: bool) -> str | None:
    aopen = _ANS_OPEN.search(rest)
    if aopen is None:
        m = _PLAIN_ANSWER.search(rest)
        if m is None or (last and truncated):  # at the cut, a plain answer line may be incomplete
            return None
        return clean_answer(m.group(1))
    after = rest[aopen.end():]
    aclose = _ANS_CLOSE.search(after)
    if aclose is not None:
        return clean_answer(after[:aclose.start()])
    if last:  # unclosed answer at the very end: it may have been cut by the token limit
        return None
    return clean_answer(after.strip().split("\n", 1)[0])


_N_COMMANDS = {"neq", "ne", "nu", "nabla", "not", "ni", "nmid", "ngeq", "nleq", "newline", "neg", "nexists",
               "natural", "nparallel", "nsubseteq", "notin", "ncong", "nsim", "nleftarrow", "nrightarrow"}


def _repair_backslashes(s: str) -> str:
    """Double backslashes that begin LaTeX commands (invalid or misread JSON escapes); keep real escapes."""
    def fix(m: re.Match) -> str:
        body = m.group(1)
        if body in ("\\", '"', "/") or re.fullmatch(r"u[0-9a-fA-F]{4}", body):
            return m.group(0)  # a valid JSON escape
        if body[0].isalpha():
            if len(body) == 1 and body in "bfnrt":
                return m.group(0)  # \n, \t, ... meant as JSON escapes
            if body[0] == "n" and body not in _N_COMMANDS:
                return "\\n" + body[1:]  # a newline before a word ("\nwhere")
            return "\\\\" + body  # a LaTeX command: \frac, \theta, \beta, \neq, ...
        return "\\\\" + body  # \(, \{, \$, \, ... : LaTeX, not JSON
    return re.sub(r"\\(\\|u[0-9a-fA-F]{4}|[a-zA-Z]+|.)", fix, s, flags=re.S)


_PROBLEM_KEYS = ("problem", "question", "statement", "text", "prompt")
_ANSWER_KEYS = ("answer", "final_answer", "finalAnswer", "result")


def _parse_json(text: str, truncated: bool) -> ParseResult | None:
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        return None
    body = _repair_backslashes(text[start:])
    decoder = json.JSONDecoder()
    objects: list[dict] = []
    pos, last_end, broken = 0, 0, None
    while pos < len(body):
        brace = body.find("{", pos)
        if brace < 0:
            break
        try:
            obj, end = decoder.raw_decode(body, brace)
        except json.JSONDecodeError:
            if broken is None or broken < last_end:
                broken = brace  # the first object after the last good one that does not decode
            pos = brace + 1
            continue
        if isinstance(obj, dict) and any(isinstance(obj.get(k), str) for k in _PROBLEM_KEYS):
            objects.append(obj)
            pos = last_end = end
        elif isinstance(obj, dict) and isinstance(obj.get("problems"), list):
            objects.extend(o for o in obj["problems"] if isinstance(o, dict))
            pos = last_end = end
        else:
            pos = brace + 1
    if not objects:
        return None
    result = ParseResult("json")
    for i, obj in enumerate(objects, 1):
        stmt = next((obj[k] for k in _PROBLEM_KEYS if isinstance(obj.get(k), str)), "")
        stmt = clean_statement(stmt)
        answer = next((obj[k] for k in _ANSWER_KEYS if k in obj), None)
        if not stmt:
            result.dropped.append(("empty", _snippet(json.dumps(obj))))
            continue
        result.problems.append(ParsedProblem(i, stmt, clean_answer(answer)))
    if broken is not None and broken >= last_end:
        tail = body[broken:]
        if re.search(r'"(?:problem|question|statement)"', tail):
            result.dropped.append(("truncated", _snippet(tail)))
    return result


def _split_blocks(lines: list[str]) -> tuple[list[tuple[int, list[str]]], str]:
    """Blocks at `Problem N` headings (preferred) or at a `N.` list numbered in sequence."""
    for pattern, kind in ((_HEADING, "heading"), (_NUMBERED, "numbered")):
        blocks: list[tuple[int, list[str]]] = []
        expected = None
        for line in lines:
            m = pattern.match(line)
            if m and (expected is None or int(m.group(1)) == expected):
                number = int(m.group(1))
                head = re.sub(r"^\s*(?:\*\*|__)?\s*[:.)\-\u2013\u2014]?\s*(?:\*\*|__)?\s*", "", m.group(2))
                head = re.sub(r"^\s*(?:\*\*|__)\s*", "", head)
                blocks.append((number, [head]))
                expected = number + 1
            elif blocks:
                blocks[-1][1].append(line)
        if len(blocks) >= 1 and (kind == "heading" or len(blocks) >= 2):
            return blocks, kind
    return [], "none"


def _parse_markdown(text: str, truncated: bool) -> ParseResult:
    blocks, _ = _split_blocks(text.split("\n"))
    result = ParseResult("markdown" if blocks else "none")
    with_answer = 0
    parsed: list[tuple[int, str, str | None, bool, str]] = []
    for number, block_lines in blocks:
        block = "\n".join(block_lines)
        ans = _PLAIN_ANSWER.search(block)
        sol = _SOLUTION_LINE.search(block)
        cut = min((m.start() for m in (ans, sol) if m is not None), default=len(block))
        stmt = block[:cut]
        answer = None
        has_answer = False
        if ans is not None:
            has_answer = True
            line = ans.group(1).strip()
            if not line.strip("*_ "):
                line = block[ans.end():].strip().split("\n", 1)[0]
            answer = clean_answer(line)
        elif sol is not None:
            boxed = _boxed_content(block[sol.start():])
            has_answer = boxed is not None
            answer = clean_answer(boxed)
        else:
            inline = re.search(r"\s(?:\*\*|__)?answer\s*(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?([^\n]*)$", stmt.rstrip(),
                               re.I)
            if inline is not None and not re.search(r"\(\s*$", stmt[:inline.start()]):
                has_answer = True
                answer = clean_answer(inline.group(1))
                stmt = stmt[:inline.start()]
        with_answer += has_answer
        parsed.append((number, stmt, answer, has_answer, block))
    for j, (number, stmt, answer, has_answer, block) in enumerate(parsed):
        last = j + 1 == len(parsed)
        if last:
            stmt = _CHATTER.sub("", stmt)
            body = stmt.rstrip()
            complete_tail = body.endswith((".", "?", "!", "$", ")", "]", "}", "*"))
            if not has_answer and (truncated or with_answer >= max(1, len(parsed) // 2) or not complete_tail):
                result.dropped.append(("truncated", _snippet(block)))
                continue
            if has_answer and truncated:
                answer = None  # the completion was cut inside this block: its answer may be incomplete
        stmt = clean_statement(stmt)
        if not stmt:
            result.dropped.append(("empty", _snippet(block)))
            continue
        result.problems.append(ParsedProblem(number, stmt, answer))
    return result


def parse_completion(text: str, *, truncated: bool = False) -> ParseResult:
    """Problems in a generator completion (see the module docstring); never raises on a string."""
    if not isinstance(text, str):
        raise TypeError("completion text must be a string")
    text = _preprocess(text)
    if _OPEN.search(text):
        return _parse_tags(text, truncated)
    stripped = _FENCE_LINE.sub("", text).strip()
    if stripped.startswith(("[", "{")) or re.search(r"^\s*```json", text, re.M | re.I):
        parsed = _parse_json(stripped, truncated)
        if parsed is not None:
            return parsed
    result = _parse_markdown(text, truncated)
    if result.problems or result.dropped:
        return result
    parsed = _parse_json(stripped, truncated)  # JSON after some chatter
    if parsed is not None:
        return parsed
    return ParseResult("none", dropped=[("unparseable", _snippet(text))] if text.strip() else [])


def format_problems(items: list[tuple[str, str | None]]) -> str:
    """The strict tag format for (statement, answer) pairs; `parse_completion` reads it back exactly."""
    blocks = [f"<problem>\n{stmt}\n</problem>\n<answer>{answer if answer is not None else 'UNKNOWN'}</answer>"
              for stmt, answer in items]
    return "\n\n".join(blocks) + "\n"
