"""String normalisation of final answers and the cheap canonical key.

`normalize_answer` first rewrites unicode math as LaTeX (`unicode_math`: `12π` -> `12\\pi`), then removes
notation that never changes the value (delimiters, `\\left`/`\\right`, spacing commands, `\\dfrac`, thousands
separators, units, degrees, percent and dollar signs, `\\text{}`).
`analyse` turns the result into a `Canon`: an exact number, an ordered sequence (tuple/interval), a set, a
matrix, a text answer or an expression, each with a key string such that equal keys imply equivalent
answers. Only answers whose keys differ and that pure python cannot decide reach sympy (see
`equivalence`), using `Canon.sympy_text`; `None` there means "never send to sympy" (text, oversized or
dangerous answers). Every step is a linear regex pass or a bounded scan, and answers longer than
`MAX_KEY_CHARS` get an exact-text key, so hostile inputs stay cheap.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from .numeric import Number, Unsafe, parse_number
from .unicode_math import unicode_to_latex

MAX_KEY_CHARS = 1000      # longer answers are compared as exact text only
MAX_SYMPY_CHARS = 400     # longer answers never reach sympy
MAX_ELEMENTS = 64         # more list/set/matrix entries: compared as text
_MAX_NESTING = 30
_MAX_BRACE_SCAN = 20_000  # longer answers keep their outer braces

_TEXT_CMDS = r"text|textnormal|textrm|textbf|textit|textsf|texttt|mbox|mathrm|mathbf|mathit|mathsf|mathtt|emph"
_UNITS = frozenset("""cm mm km m2 inch inches in ft feet foot yd yard yards mile miles meter meters metre metres
unit units sq square cubic degree degrees deg dollar dollars cent cents percent pct percentage hour hours hr hrs
minute minutes min mins second seconds sec secs s day days week weeks month months year years kg g gram grams
mg lb lbs pound pounds oz ounce ounces liter liters litre litres ml mph kmh km/h m/s people students ways
cups cup gallons gallon quarts mi""".split())
_UNIT_WORDS = re.compile(r"[A-Za-z][A-Za-z\s./]*")
_BRACE_TOKEN = re.compile(r"\\.|[{}]")
_AMPM = re.compile(r"^\s*[ap]\.?\s*m\.?\s*$", re.I)

_OUTER = [(r"$$", r"$$"), (r"$", r"$"), (r"\(", r"\)"), (r"\[", r"\]")]
_BOX_PREFIX = re.compile(r"^\\(?:boxed|fbox)\s*\{")
_SIZING = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)(?![a-zA-Z])(?:\s*\.)?")
_THOUSANDS_MARKUP = re.compile(r"(?<=\d)(?:\\!)?\s*(?:\{,\}|,)\s*\\!\s*(?=\d{3}(?!\d))|(?<=\d)\{,\}(?=\d{3}(?!\d))")
_SPACING = re.compile(r"\\\\|\\[,;:!> ]|\\q?quad(?![a-zA-Z])|\\(?:en|thin|med|thick|neg)space(?![a-zA-Z])|~")
_STYLE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])")
_FRAC_VARIANT = re.compile(r"\\[dtc]frac(?![a-zA-Z])")
_BINOM_VARIANT = re.compile(r"\\[dt]binom(?![a-zA-Z])")
_REL = [(re.compile(r"\\leqslant|\\le(?![a-zA-Z])|≤|<="), r"\\leq "),
        (re.compile(r"\\geqslant|\\ge(?![a-zA-Z])|≥|>="), r"\\geq "),
        (re.compile(r"\\neq?(?![a-zA-Z])|!=|≠"), r"\\neq "), (re.compile(r"\\lt(?![a-zA-Z])"), "<"),
        (re.compile(r"\\gt(?![a-zA-Z])"), ">"), (re.compile(r"\\dots|\\ldots|\\cdots"), r"\\dots ")]
_DOLLAR = re.compile(r"\\\$|\$")
_PERCENT = re.compile(r"\\?%")
_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)(?![a-zA-Z])")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree(?![a-zA-Z])")
_TEXT_UNIT_TAIL = re.compile(r"\s*\\(?:" + _TEXT_CMDS + r")\s*\{([^{}]*)\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$")
_TEXT_OPEN = re.compile(r"\\(?:" + _TEXT_CMDS + r"|operatorname\*?)\s*\{")
_PLAIN_UNIT_TAIL = re.compile(r"^(.*?[\d}.])\s*((?:[A-Za-z]+\.?(?:\s+|$))*[A-Za-z]+\.?)\s*(?:\^\s*\{?\s*[23]\s*\}?)?$")
_AND_OR = re.compile(r"(?<=\S)\s*,?\s*(?<![A-Za-z\\])(?:and|or)(?![A-Za-z])\s*(?=\S)")
_BARE_FUNCS = re.compile(
    r"(?<![\\A-Za-z])(arcsin|arccos|arctan|sin|cos|tan|cot|sec|csc|log|ln|exp|sqrt|pi)(?![A-Za-z])")
_FRAC_SHORT = [(re.compile(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])"), r"\\frac{\1}{\2}"),
               (re.compile(r"\\frac\s*([0-9a-zA-Z])\s*\{"), r"\\frac{\1}{"),
               (re.compile(r"\\frac\s*(\{[^{}]*\})\s*([0-9a-zA-Z])"), r"\\frac\1{\2}"),
               (re.compile(r"\\sqrt\s*([0-9a-zA-Z])"), r"\\sqrt{\1}"),
               (re.compile(r"([\^_])\s*\{\s*([0-9a-zA-Z])\s*\}"), r"\1\2")]
_MATRIX_ENV = re.compile(r"\\(begin|end)\s*\{(?:[pbBvV]?matrix|smallmatrix)\}")
_ARRAY_BEGIN = re.compile(r"\\begin\s*\{array\}\s*\{[^{}]*\}")
_ARRAY_END = re.compile(r"\\end\s*\{array\}")
_BRACKETED_MATRIX = re.compile(r"^[\[(]\s*(\\begin\{pmatrix\}.*\\end\{pmatrix\})\s*[\])]$", re.S)
_CHOICE = re.compile(r"^\(([A-E])\)$")
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INSANE = re.compile(r"[\ud800-\udfff\ufffd]|\\boxed|\\fbox")  # never worth a CAS call


def _close_brace(s: str, open_idx: int) -> int:
    """Index of the `}` matching s[open_idx] == '{' (escaped `\\{`/`\\}` ignored), or -1. Linear."""
    depth = 0
    for m in _BRACE_TOKEN.finditer(s, open_idx):
        tok = m.group()
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
            if depth == 0:
                return m.start()
    return -1


def strip_wrappers(s: str) -> str:
    """Remove one or more whole-answer wrappers: `$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`, `\\boxed{..}`, `{..}`."""
    for _ in range(8):
        s = s.strip()
        before = s
        for left, right in _OUTER:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                inner = s[len(left):len(s) - len(right)]
                if left != "$" or "$" not in inner.replace("\\$", ""):
                    s = inner.strip()
                    break
        m = _BOX_PREFIX.match(s)
        if len(s) > _MAX_BRACE_SCAN or not (s.endswith("}") and (m or s.startswith("{"))):
            pass  # brace matching is linear, but not worth repeating on hostile megabyte answers
        elif m and _close_brace(s, m.end() - 1) == len(s) - 1:
            s = s[m.end():-1]
        elif s.startswith("{") and _close_brace(s, 0) == len(s) - 1:
            s = s[1:-1]
        if s == before:
            break
    return s.strip()


def _unwrap_text(s: str) -> str:
    """`\\text{abc}` -> `abc` for every text-like command (bounded number of passes)."""
    for _ in range(_MAX_NESTING):
        m = _TEXT_OPEN.search(s)
        if not m:
            return s
        end = _close_brace(s, m.end() - 1)
        if end < 0:
            return s[:m.start()] + s[m.end():]
        s = s[:m.start()] + s[m.end():end] + s[end + 1:]
    return s


def _is_unit_text(words: str) -> bool:
    """Text after a value that names a unit (`\\text{ cm}`, `\\mbox{ square units}`), but not a.m./p.m."""
    words = words.strip()
    return bool(words) and not _AMPM.match(words) and bool(_UNIT_WORDS.fullmatch(words))


def _strip_units(s: str) -> str:
    for _ in range(3):
        m = _TEXT_UNIT_TAIL.search(s)
        if not (m and m.start() > 0 and _is_unit_text(m.group(1))):
            break
        s = s[:m.start()].rstrip()
    return s


def _strip_plain_units(s: str) -> str:
    m = _PLAIN_UNIT_TAIL.match(s) if len(s) <= 200 else None
    if not m:
        return s
    prefix, words = m.group(1).rstrip("."), m.group(2)
    spaced = s[len(m.group(1)):len(m.group(1)) + 1].isspace()
    parts = [w.strip(".").lower() for w in words.split()]
    if _AMPM.match(words):
        return s
    if all(p in _UNITS for p in parts) or (spaced and all(len(p) >= 3 for p in parts) and parse_number(prefix)):
        return prefix
    return s


def normalize_answer(answer: str) -> str:
    """String-level normalisation: same value, fewer spellings. Keeps the answer readable LaTeX."""
    if not isinstance(answer, str):
        return ""
    if len(answer) > MAX_KEY_CHARS:
        return " ".join(answer.split())
    s = strip_wrappers(unicode_to_latex(_CONTROL.sub("", answer)).strip().rstrip("."))
    s = _SIZING.sub("", s)
    s = _THOUSANDS_MARKUP.sub("", s)
    s = _SPACING.sub(lambda m: m.group() if m.group() == "\\\\" else " ", s)
    s = _STYLE.sub("", s)
    s = _FRAC_VARIANT.sub(r"\\frac", s)
    s = _BINOM_VARIANT.sub(r"\\binom", s)
    for pattern, repl in _REL:
        s = pattern.sub(repl, s)
    s = _DOLLAR.sub("", s)
    s = _PERCENT.sub("", s)
    s = _strip_units(s.strip().rstrip("."))
    if _TRIG.search(s):
        s = _DEGREE.sub(r"\\cdot\\frac{\\pi}{180}", s)
    else:
        s = _DEGREE.sub("", s)
    s = _unwrap_text(s)
    s = _BARE_FUNCS.sub(r"\\\1", s)
    s = _SPACES.sub(" ", s).strip().rstrip(".,;").strip()
    s = _strip_plain_units(s)
    s = _AND_OR.sub(",", s)
    for pattern, repl in _FRAC_SHORT:
        s = pattern.sub(repl, s)
    s = _MATRIX_ENV.sub(lambda m: "\\" + m.group(1) + "{pmatrix}", s)
    s = _ARRAY_BEGIN.sub(r"\\begin{pmatrix}", s)
    s = _ARRAY_END.sub(r"\\end{pmatrix}", s)
    s = _BRACKETED_MATRIX.sub(r"\1", s)
    s = s.strip()
    if s.startswith("+") and not s.startswith("+\\infty"):
        s = s[1:].strip()
    m = _CHOICE.match(s)
    return m.group(1) if m else s


# ----------------------------------------------------------------------------------------- canonical form
@dataclass(frozen=True)
class Canon:
    """Analysed answer. `key` equal => equivalent. `kind`: num, seq, set, matrix, text, expr, long."""

    key: str
    kind: str
    normalized: str
    number: Number | None = None
    elements: tuple[Canon, ...] = ()
    brackets: str = ""          # seq: opening+closing bracket ("[)"); set: "{}" for \{..\}, "" for a bare list
    sympy_text: str | None = None


_LABEL = (r"(?:[A-Za-z](?:_\{?[A-Za-z0-9]+\}?)?'?|\\[a-zA-Z]+|[A-Z]{2,4}|\|[A-Za-z]+\||[A-Za-z]\([A-Za-z, ]*\)"
          r"|\((?:[A-Za-z](?:_\{?\w+\}?)?\s*,\s*)+[A-Za-z](?:_\{?\w+\}?)?\)|\\frac\{[A-Za-z]+\}\{[A-Za-z]+\})")
_ASSIGN = re.compile(r"^(" + _LABEL + r"(?:\s*:\s*" + _LABEL + r")?)\s*(?:=|\\approx|\\in(?![a-zA-Z]))\s*(.+)$")
_CHAIN_EQ = re.compile(r"(?<![<>!=\\])=(?!=)")
_CTRL_SPACE = re.compile(r"(\\[a-zA-Z]+) +(?=[a-zA-Z])")
_DIGIT_SPACE = re.compile(r"(?<=\d) +(?=\d)")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_ABBREV_OR_TIME = re.compile(r"[A-Za-z]\.[A-Za-z]|\d:\d\d|^\d+_\{?\d+\}?$")  # p.m., 4:30, 52_8 (base)
_ENV = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}")
_TOP = re.compile(r"\\\{|\\\}|\\.|[()\[\]{},;]")


def _split_top(s: str) -> list[str] | None:
    """Split at top-level commas/semicolons; None if brackets are unbalanced or nesting is too deep."""
    parts, depth, start = [], 0, 0
    for m in _TOP.finditer(s):
        tok = m.group()
        if tok in ("(", "[", "{", "\\{"):
            depth += 1
            if depth > _MAX_NESTING:
                return None
        elif tok in (")", "]", "}", "\\}"):
            depth -= 1
            if depth < 0:
                return None
        elif tok in (",", ";") and depth == 0:
            parts.append(s[start:m.start()])
            start = m.end()
    if depth != 0:
        return None
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _wrapped(s: str) -> bool:
    """True if the bracket opening at s[0] closes at the last character."""
    depth = 0
    for m in _TOP.finditer(s):
        tok = m.group()
        if tok in ("(", "[", "{", "\\{"):
            depth += 1
        elif tok in (")", "]", "}", "\\}"):
            depth -= 1
            if depth == 0:
                return m.end() == len(s)
    return False


def _is_texty(s: str) -> bool:
    """Words (not LaTeX commands, not all-caps point names), abbreviations like `p.m.`, clock times, or
    numbers in another base: compared by key only, never by sympy."""
    bare = _ENV.sub("", s)
    return any(not w.isupper() for w in _WORD.findall(bare)) or bool(_ABBREV_OR_TIME.search(bare))


def _strip_label(s: str) -> str:
    """`x = 5` -> `5`, `f(x) = 2x+3` -> `2x+3`, `(p,q) = (3,2)` -> `(3,2)`; a chain `x = 5+6 = 11` -> `11`."""
    m = _ASSIGN.match(s)
    if not m:
        return s
    rhs = m.group(2).strip()
    if "=" in rhs:
        parts = _CHAIN_EQ.split(rhs)
        if len(parts) == 1 or "," in rhs or ";" in rhs:
            return s
        rhs = parts[-1].strip()
    return rhs or s


def _squash(s: str) -> str:
    """Remove spaces that carry no meaning (keep one after a control word before a letter)."""
    s = _CTRL_SPACE.sub(lambda m: m.group(1) + "\x00", s)
    s = _DIGIT_SPACE.sub("\x00", s)  # "2^6 3^5" must not become "2^63^5"
    return s.replace(" ", "").replace("\x00", " ")


def _long_key(text: str) -> Canon:
    digest = hashlib.sha256(" ".join(text.split()).encode("utf-8", "surrogatepass")).hexdigest()
    return Canon(key="long:" + digest, kind="long", normalized=text)


def _analyse(s: str, depth: int) -> Canon:
    """Canonical form of a normalised answer string."""
    full, s = s, _strip_label(s)
    try:
        number = parse_number(s) or (parse_number(s[1:-1].strip()) if s[:1] == "(" and s[-1:] == ")" else None)
        if number is None and " " in s and not re.search(r"[\d,]\s+\d", s):
            number = parse_number(s.replace(" ", ""))
    except Unsafe:
        return _long_key(s)
    if number is not None:
        return Canon(key=number.text(), kind="num", normalized=s, number=number,
                     sympy_text=None if _INSANE.search(full) else full)
    if _is_texty(s):
        return Canon(key="text:" + _squash(s).lower(), kind="text", normalized=s)
    sympy_text = full if len(full) <= MAX_SYMPY_CHARS and not _INSANE.search(full) else None
    if depth < 4:
        container = _container(s, depth, sympy_text)
        if container is not None:
            return container
    return Canon(key=_squash(s), kind="expr", normalized=s, sympy_text=sympy_text)


def _container(s: str, depth: int, sympy_text: str | None) -> Canon | None:
    if s.startswith("\\begin{pmatrix}") and s.endswith("\\end{pmatrix}"):
        body = s[len("\\begin{pmatrix}"):-len("\\end{pmatrix}")]
        rows = [r for r in body.split("\\\\") if r.strip()]
        cells = [c for r in rows for c in r.split("&")]
        if not rows or len(cells) > MAX_ELEMENTS:
            return None
        width = len(rows[0].split("&"))
        if any(len(r.split("&")) != width for r in rows):
            return None
        elements = tuple(_analyse(c.strip(), depth + 1) for c in cells)
        key = f"mat{len(rows)}x{width}[" + ",".join(e.key for e in elements) + "]"
        return Canon(key=key, kind="matrix", normalized=s, elements=elements, brackets=f"{len(rows)}x{width}",
                     sympy_text=sympy_text)
    kind, brackets, inner = None, "", s
    if s.startswith("\\{") and s.endswith("\\}") and _wrapped(s):
        kind, brackets, inner = "set", "{}", s[2:-2]
    elif s[:1] in "([" and s[-1:] in ")]" and _wrapped(s):
        kind, brackets, inner = "seq", s[0] + s[-1], s[1:-1]
    parts = _split_top(inner)
    if parts is None or len(parts) > MAX_ELEMENTS or any(not p for p in parts):
        return None
    if kind is None:
        if len(parts) < 2:
            return None
        kind = "set"  # a bare list "1, 2, 3" is an unordered collection of answers
    elif kind == "seq" and len(parts) < 2:
        return None
    elements = tuple(_analyse(p, depth + 1) for p in parts)
    if kind == "set":
        keys = sorted(e.key for e in elements)
        key = "{" + ",".join(keys) + "}"
    else:
        key = brackets[0] + ",".join(e.key for e in elements) + brackets[1]
    return Canon(key=key, kind=kind, normalized=s, elements=elements, brackets=brackets, sympy_text=sympy_text)


@lru_cache(maxsize=65536)
def analyse(answer: str) -> Canon:
    """Canonical form of a raw answer string (cached). Never raises on str input."""
    if len(answer) > MAX_KEY_CHARS:
        return _long_key(answer)
    try:
        return _analyse(normalize_answer(answer), 0)
    except (RecursionError, ValueError, OverflowError, MemoryError):
        return _long_key(answer)


def canonical_key(answer: str) -> str:
    """Cheap pure-python key: equal keys imply equivalent answers (the converse does not hold)."""
    if not isinstance(answer, str):
        raise TypeError(f"canonical_key expects a str, got {type(answer).__name__}")
    return analyse(answer).key
