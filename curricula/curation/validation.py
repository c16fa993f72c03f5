"""Checks a generated problem must pass before it is kept.

`validate_problem(text, answer, config) -> list[str]` returns the reasons for rejection (empty: keep):

- `too_short` / `too_long`: character and word bounds (`min_chars`, `max_chars`, `min_words`);
- `no_question`: neither a question mark nor an instruction such as find/compute/determine/how many;
- `answer_leak`: the statement carries an answer or solution (`Answer:`, `\\boxed{}`, `the answer is`,
  `Solution:`, `Hint:`, answer tags), or text after the final question repeats the reference answer;
- `proof_only`: a "prove that"/"show that" problem with nothing to compute (no checkable final answer);
- `diagram`: `[asy]` code or a reference to a figure that is not there;
- `format_residue`: output-format markup left in the statement (`<problem>`, `### Problem`, code fences);
- `latex_*`: LaTeX that does not balance: `latex_braces`, `latex_dollars`, `latex_delimiters` (`\\(\\)`,
  `\\[\\]`), `latex_environments` (`\\begin`/`\\end`), `latex_left_right`.

`check_answer(answer)` says whether a reference answer is usable (non-empty, short, balanced); an unusable
answer is dropped (the problem is kept without one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ValidationConfig:
    """Bounds and switches of `validate_problem` (defaults in brackets)."""

    min_chars: int = 12
    max_chars: int = 1500
    min_words: int = 2
    reject_proofs: bool = True
    reject_diagrams: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_chars < self.max_chars:
            raise ValueError("need 0 < min_chars < max_chars")


_QUESTION_WORDS = re.compile(
    r"\b(?:what|which|how|who|when|find|compute|calculate|determine|evaluate|simplify|solve|express|give|"
    r"enter|rationali[sz]e|factor|expand|convert|round|estimate|work\s+out|figure\s+out|write|rewrite|list|"
    r"multiply|divide|subtract|add|prove|show)\b", re.I)
_LEAK_MARKERS = re.compile(
    r"\\boxed\b|\bfinal\s+answer\b|\bthe\s+(?:correct\s+)?answer\s+is\b|\banswer\s*[:=]|"
    r"(?:^|\n)\s*(?:\*\*|__)?\s*solution\s*(?:\*\*|__)?\s*(?::|\.?\s*(?:\n|$))|\bsolution\s*:|"
    r"\bhints?\s*:|\bexplanation\s*:|"
    r"<\s*/?\s*(?:answer|solution)\b", re.I)
_PROOF = re.compile(r"\b(?:prove|show)\s+that\b|\bprove\b", re.I)
_COMPUTE = re.compile(r"\b(?:find|compute|calculate|determine|evaluate|what|how\s+many|how\s+much)\b", re.I)
_DIAGRAM = re.compile(r"\[asy\]|\\begin\{tikzpicture\}|\b(?:shown|pictured|depicted)\s+(?:below|above|in\s+the\s+"
                      r"(?:figure|diagram))|\bin\s+the\s+(?:figure|diagram)\b|\bsee\s+(?:the\s+)?(?:figure|diagram)\b",
                      re.I)
_RESIDUE = re.compile(r"<\s*/?\s*problem\b|^\s*#{1,6}\s*problem\b|^\s*```|\bReference\s+\d+\s*:", re.I | re.M)


def _strip_escapes(text: str) -> str:
    # `\\` (a line break), `\$`, `\{`, `\}`, `\%` are literal characters, not structure.
    return re.sub(r"\\\\|\\[${}%#&_]", " ", text)


def check_latex(text: str) -> str | None:
    """The first LaTeX imbalance found (`latex_braces`, ...), or None when the markup balances."""
    body = _strip_escapes(text)
    depth = 0
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return "latex_braces"
    if depth != 0:
        return "latex_braces"
    display = body.count("$$")
    single = body.replace("$$", " ").count("$")
    if display % 2 or single % 2:
        return "latex_dollars"
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        opened = 0
        for m in re.finditer(re.escape(left) + "|" + re.escape(right), body):
            opened += 1 if m.group(0) == left else -1
            if opened < 0 or opened > 1:
                return "latex_delimiters"
        if opened:
            return "latex_delimiters"
    stack: list[str] = []
    for m in re.finditer(r"\\(begin|end)\s*\{([^}]*)\}", body):
        if m.group(1) == "begin":
            stack.append(m.group(2))
        elif not stack or stack.pop() != m.group(2):
            return "latex_environments"
    if stack:
        return "latex_environments"
    lefts = len(re.findall(r"\\left(?![a-zA-Z])", body))
    rights = len(re.findall(r"\\right(?![a-zA-Z])", body))
    if lefts != rights:
        return "latex_left_right"
    return None


def _compact(text: str) -> str:
    return re.sub(r"[\s$]|\\[,;!]|\\left|\\right", "", text).replace("\\dfrac", "\\frac")


def leaks_answer(text: str, answer: str | None) -> bool:
    """True when the statement carries its answer or a solution (see the module docstring).

    Besides explicit markers, text after the final question mark that states the reference answer
    (`= 7`, `is 7`, `(7)`, `: 7`, spacing and `$` ignored) is a leak.
    """
    if _LEAK_MARKERS.search(text):
        return True
    if not answer:
        return False
    last_q = text.rfind("?")
    key = _compact(answer)
    if last_q < 0 or not key:
        return False
    tail = _compact(text[last_q + 1:])
    end = r"(?![0-9]|\.[0-9])" if key[-1].isdigit() else ""
    k = re.escape(key)
    return re.search(r"(?:=|is|equals|:)" + k + end + r"|\(" + k + r"\)", tail) is not None


def repair_statement(text: str) -> str:
    """Light repairs before validation: money written `$12` throughout (no math in `$`) becomes `\\$12`."""
    dollars = [m.start() for m in re.finditer(r"(?<!\\)\$", text)]
    if dollars and all(re.match(r"\$\.?\d", text[i:]) for i in dollars):
        text = re.sub(r"(?<!\\)\$(?=\.?\d)", r"\\$", text)
    return text


def validate_problem(text: str, answer: str | None = None,
                     config: ValidationConfig = ValidationConfig()) -> list[str]:
    """Reasons to reject a generated problem; an empty list means it is kept."""
    reasons: list[str] = []
    stripped = text.strip()
    if len(stripped) < config.min_chars or len(stripped.split()) < config.min_words:
        reasons.append("too_short")
    if len(stripped) > config.max_chars:
        reasons.append("too_long")
    if "?" not in stripped and not _QUESTION_WORDS.search(stripped):
        reasons.append("no_question")
    if leaks_answer(stripped, answer):
        reasons.append("answer_leak")
    if config.reject_proofs and _PROOF.search(stripped) and "?" not in stripped and not _COMPUTE.search(stripped):
        reasons.append("proof_only")
    if config.reject_diagrams and _DIAGRAM.search(stripped):
        reasons.append("diagram")
    if _RESIDUE.search(stripped):
        reasons.append("format_residue")
    latex = check_latex(stripped)
    if latex:
        reasons.append(latex)
    return reasons


def check_answer(answer: str | None) -> str | None:
    """The answer if it is usable as a hidden reference, else None."""
    if answer is None:
        return None
    answer = answer.strip()
    if not answer or len(answer) > 120 or check_latex(answer) is not None:
        return None
    if re.search(r"<\s*/?\s*(?:answer|problem)\b", answer, re.I):
        return None
    return answer
