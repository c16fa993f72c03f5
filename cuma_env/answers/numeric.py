"""Pure-python numbers for answer keys: exact rationals and a guarded numeric fingerprint.

Most votes are decided here, without sympy: `\\frac{1}{2}`, `0.5`, `1/2`, `50\\%`-stripped numbers and mixed
numbers all become one exact `Fraction`, and small LaTeX expressions (`2\\sqrt{2}`, `\\frac{\\pi}{4}`,
`(x-2)(x+2)`) get a numeric fingerprint that proves two answers *different* in microseconds. Everything is
bounded: digit strings, exponents and nesting depth are capped, so hostile inputs (`9^{9^{9^{9}}}`) fail
fast with `Unsafe` instead of computing giant integers.
"""

from __future__ import annotations

import cmath
import math
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_DIGITS = 400          # longest digit string accepted as an exact number
MAX_POW10 = 400           # |e| in 10^e accepted as an exact number
MAX_EVAL_CHARS = 600      # expressions longer than this get no fingerprint
MAX_DEPTH = 40            # bracket nesting accepted by the evaluator
MAGNITUDE_LIMIT = 1e150   # |value| above this marks the answer sympy-unsafe


class Unsafe(Exception):
    """The expression would blow up (huge power, deep nesting): never hand it to sympy."""


class Unknown(Exception):
    """The evaluator does not understand the expression: defer to sympy."""


@dataclass(frozen=True)
class Number:
    """An exact number plus how it was written: `decimals` = digits after the point of a decimal literal."""

    value: Fraction
    decimals: int | None = None  # None: written exactly (integer, fraction, mixed number)

    def text(self) -> str:
        v = self.value
        return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


_DEC = r"(?:\d+(?:\.\d*)?|\.\d+)"
_INT_OR_DEC = re.compile(r"[+-]?" + _DEC)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?")
_FRAC = re.compile(r"([+-]?)\\frac\{([+-]?" + _DEC + r")\}\{([+-]?" + _DEC + r")\}")
_SLASH = re.compile(r"([+-]?" + _DEC + r")/([+-]?" + _DEC + r")")
_MIXED = re.compile(r"([+-]?)(\d+)(?:\s*\\frac\{(\d+)\}\{(\d+)\}|\s+(\d+)/(\d+))")
_SCI = re.compile(r"([+-]?" + _DEC + r")(?:\s*(?:\\times|\\cdot|\*|x)\s*10\^\{?([+-]?\d+)\}?|[eE]([+-]?\d+))")
_REPEATING = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d+)\}")
_POW10 = re.compile(r"([+-]?)10\^\{?([+-]?\d+)\}?")


def _dec(text: str) -> tuple[Fraction, int | None]:
    """Exact value of an int/decimal literal and its number of decimals (None for integers)."""
    body = text.lstrip("+-")
    if len(body) > MAX_DIGITS:
        raise Unsafe("digit string too long")
    value = Fraction(body) if not body.endswith(".") else Fraction(body[:-1])
    decimals = len(body.split(".", 1)[1]) if "." in body else None
    return (-value if text.startswith("-") else value), decimals


def parse_number(s: str) -> Number | None:
    """Parse a whole string as one plain number, or return None. Spaces must already be collapsed.

    Accepted: integers, decimals (`.5`, `1,000.5`, `1 000`), `\\frac{a}{b}` and `a/b` of such, mixed numbers
    (`1\\frac{1}{2}`, `1 1/2`), scientific notation (`2.3\\times10^{-3}`, `2.3e-3`, `10^{5}`).
    """
    if not s or len(s) > MAX_DIGITS + 40:
        return None
    try:
        if _INT_OR_DEC.fullmatch(s):
            return Number(*_dec(s))
        if _THOUSANDS.fullmatch(s) or _SPACED_THOUSANDS.fullmatch(s):
            return Number(*_dec(s.replace(",", "").replace(" ", "")))
        m = _FRAC.fullmatch(s) or _SLASH.fullmatch(s)
        if m:
            groups = m.groups()
            sign = -1 if len(groups) == 3 and groups[0] == "-" else 1
            num, _ = _dec(groups[-2])
            den, _ = _dec(groups[-1])
            return None if den == 0 else Number(sign * num / den)
        m = _MIXED.fullmatch(s)
        if m:
            sign, whole, n1, d1, n2, d2 = m.groups()
            num, den = int(n1 or n2), int(d1 or d2)
            if den == 0 or num >= den:
                return None
            value = int(whole) + Fraction(num, den)
            return Number(-value if sign == "-" else value)
        m = _REPEATING.fullmatch(s)
        if m:  # 1.\overline{3} = 4/3, 0.1\overline{6} = 1/6
            sign, whole, head, rep = m.groups()
            if len(head) + len(rep) > 50:
                return None
            value = int(whole or 0) + Fraction(int(head or 0), 10 ** len(head))
            value += Fraction(int(rep), 10 ** len(head) * (10 ** len(rep) - 1))
            return Number(-value if sign == "-" else value)
        m = _SCI.fullmatch(s)
        if m:
            mant, decimals = _dec(m.group(1))
            exp = int(m.group(2) or m.group(3))
            if abs(exp) > MAX_POW10:
                raise Unsafe("exponent too large")
            places = None if decimals is None and exp >= 0 else max(0, (decimals or 0) - exp)
            return Number(mant * Fraction(10) ** exp, places)
        m = _POW10.fullmatch(s)
        if m:
            exp = int(m.group(2))
            if abs(exp) > MAX_POW10:
                raise Unsafe("exponent too large")
            value = Fraction(10) ** exp
            return Number(-value if m.group(1) == "-" else value)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return None


def numbers_equivalent(a: Number, b: Number) -> bool:
    """Exact equality, or a long decimal (>= 6 places) that rounds/truncates the other exact value.

    `0.333333` ~ `1/3` and `0.0833333333333333` ~ `1/12` (as Math-Verify's 6-place rounding), but two
    decimal literals must agree exactly and `0.33` is not `1/3`.
    """
    if a.value == b.value:
        return True
    for approx, exact in ((a, b), (b, a)):
        if approx.decimals is not None and approx.decimals >= 6 and exact.decimals is None:
            if abs(approx.value - exact.value) < Fraction(1, 10**approx.decimals):
                return True
    return False


# ---------------------------------------------------------------- numeric fingerprint of small expressions
_TOKEN = re.compile(r"\d+\.?\d*|\.\d+|\\[a-zA-Z]+|[a-zA-Z]|\S")
_GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta kappa lambda mu nu xi rho sigma tau "
    "upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega".split()
)
_FUNCS = {
    "\\sin": cmath.sin, "\\cos": cmath.cos, "\\tan": cmath.tan, "\\cot": lambda z: 1 / cmath.tan(z),
    "\\sec": lambda z: 1 / cmath.cos(z), "\\csc": lambda z: 1 / cmath.sin(z), "\\ln": cmath.log,
    "\\exp": cmath.exp, "\\arcsin": cmath.asin, "\\arccos": cmath.acos, "\\arctan": cmath.atan,
}
_MUL = frozenset({"*", "\\cdot", "\\times"})
_DIV = frozenset({"/", "\\div"})
# Variable values: two points, the second with negative values so |x| != x and sqrt(x^2) != x are seen.
_POINTS = (0.5 + 1.7 * ((0.6180339887 * k) % 1.0) for k in range(1, 200))
_VALUES = tuple(_POINTS)


def _var_value(name: str, point: int) -> complex:
    h = sum((i + 1) * ord(c) for i, c in enumerate(name)) % len(_VALUES)
    if point == 0:
        return complex(_VALUES[h])
    v = _VALUES[(7 * h + 3) % len(_VALUES)] * 1.31
    return complex(-v if h % 2 else v)


class _Evaluator:
    """Recursive-descent evaluator over complex floats for +,-,*,/,^, \\frac, \\sqrt, \\pi, i, e, variables."""

    def __init__(self, tokens: list[str], point: int):
        self.toks, self.pos, self.point, self.depth = tokens, 0, point, 0
        self.has_vars = False

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise Unknown(f"expected {expected!r}, got {tok!r}")
        self.pos += 1
        return tok

    def check(self, value: complex) -> complex:
        if not (cmath.isfinite(value)):
            raise Unsafe("non-finite value")
        if abs(value) > MAGNITUDE_LIMIT:
            raise Unsafe("value too large")
        return value

    def expr(self) -> complex:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Unsafe("nesting too deep")
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = self.check(value + rhs if op == "+" else value - rhs)
        self.depth -= 1
        return value

    def term(self) -> complex:
        value = self.unary()
        while True:
            tok = self.peek()
            if tok in _MUL or tok in _DIV:
                self.take()
                rhs = self.unary()
                if tok in _DIV:
                    if rhs == 0:
                        raise Unknown("division by zero")
                    value = self.check(value / rhs)
                else:
                    value = self.check(value * rhs)
            elif tok is not None and self.starts_atom(tok):
                value = self.check(value * self.power())
            else:
                return value

    def starts_atom(self, tok: str) -> bool:
        return tok[0].isdigit() or tok[0] == "." or tok.isalpha() or tok in ("(", "{") or (
            tok.startswith("\\") and tok not in _MUL and tok not in _DIV)

    def unary(self) -> complex:
        if self.peek() in ("-", "+"):
            sign = -1 if self.take() == "-" else 1
            return sign * self.unary()
        return self.power()

    def power(self) -> complex:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exp = self.group_or_atom(signed=True)
            if abs(exp) > 1000:
                raise Unsafe("exponent too large")
            try:
                if base == 0:
                    return complex(0) if exp.real > 0 else self.raise_unknown()
                if exp.imag == 0 and float(exp.real).is_integer():
                    return self.check(base ** int(exp.real))
                return self.check(cmath.exp(exp * cmath.log(base)))
            except (OverflowError, ZeroDivisionError) as exc:
                raise Unsafe("power overflow") from exc
        return base

    def function(self, name: str) -> complex:
        """`\\sin x`, `\\sin(2x)`, `\\sin^2 x`, `\\cos 2x + 1`: a bare argument is a run of atoms."""
        power = None
        if self.peek() == "^":
            self.take()
            power = self.group_or_atom(signed=True)
        if self.peek() in ("(", "{"):
            arg = self.atom()
        else:
            arg = self.power()
            while self.peek() is not None and self.peek() not in _FUNCS and (
                    self.peek()[0].isdigit() or self.peek().isalpha()):
                arg = self.check(arg * self.power())
        try:
            value = self.check(_FUNCS[name](arg))
        except (ValueError, ZeroDivisionError, OverflowError) as exc:
            raise Unknown(f"{name} undefined here") from exc
        if power is not None:
            if power == -1:
                raise Unknown("inverse-function notation")
            value = self.check(value ** power)
        return value

    def raise_unknown(self) -> complex:
        raise Unknown("0 to a non-positive power")

    def group_or_atom(self, signed: bool = False) -> complex:
        if self.peek() == "{":
            self.take()
            value = self.expr()
            self.take("}")
            return value
        if signed and self.peek() == "-":
            self.take()
            return -self.atom()
        return self.atom()

    def atom(self) -> complex:
        tok = self.take()
        if tok[0].isdigit() or tok[0] == ".":
            if len(tok) > 30:
                raise Unknown("long literal")
            return complex(float(tok))
        if tok in ("(", "{"):
            value = self.expr()
            self.take(")" if tok == "(" else "}")
            return value
        if tok == "\\frac":
            num = self.group_or_atom()
            den = self.group_or_atom()
            if den == 0:
                raise Unknown("division by zero")
            return self.check(num / den)
        if tok == "\\sqrt":
            index = complex(2)
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            radicand = self.group_or_atom()
            if radicand == 0:
                return complex(0)
            if index == 2:
                return cmath.sqrt(radicand)
            return self.check(cmath.exp(cmath.log(radicand) / index))
        if tok in _FUNCS:
            return self.function(tok)
        if tok == "\\pi":
            return complex(math.pi)
        if tok == "i":
            return 1j
        if tok == "e":
            return complex(math.e)
        if tok.isalpha() or (tok.startswith("\\") and tok[1:] in _GREEK):
            name = tok
            if self.peek() == "_":
                self.take()
                sub = self.take()
                if sub == "{":
                    parts = []
                    while self.peek() not in ("}", None):
                        parts.append(self.take())
                    self.take("}")
                    sub = "".join(parts)
                name += "_" + sub
            self.has_vars = True
            return _var_value(name, self.point)
        raise Unknown(f"unsupported token {tok!r}")


@dataclass(frozen=True)
class Fingerprint:
    values: tuple[complex, ...]  # the expression at two variable assignments
    has_vars: bool
    has_decimal: bool


def fingerprint(expr: str) -> Fingerprint | None:
    """Numeric fingerprint of a normalised LaTeX expression; None when not understood.

    Raises Unsafe when evaluating shows the expression is dangerous for a CAS (giant powers, deep nesting).
    """
    if len(expr) > MAX_EVAL_CHARS:
        return None
    tokens = _TOKEN.findall(expr)
    values = []
    has_vars = False
    for point in (0, 1):
        ev = _Evaluator(tokens, point)
        try:
            value = ev.expr()
        except Unknown:
            return None
        except (RecursionError, OverflowError, ValueError, ZeroDivisionError) as exc:
            raise Unsafe(str(exc)) from exc
        if ev.pos != len(tokens):
            return None
        values.append(value)
        has_vars = ev.has_vars
        if not has_vars:
            break
    return Fingerprint(tuple(values), has_vars, "." in expr)


def fingerprints_differ(a: Fingerprint, b: Fingerprint) -> bool:
    """True when the values prove the expressions differ (loose tolerance if decimals are involved)."""
    rel = 1e-3 if (a.has_decimal or b.has_decimal) else 1e-9
    va, vb = a.values, b.values
    if len(va) != len(vb):  # one side has variables: compare at the first point only
        va, vb = va[:1], vb[:1]
    return any(abs(x - y) > rel * max(1.0, abs(x), abs(y)) for x, y in zip(va, vb))


def fingerprints_prove_equal(a: Fingerprint, b: Fingerprint) -> bool:
    """Variable-free, decimal-free, moderate-size values agreeing to 1e-12 are taken as equal."""
    if a.has_vars or b.has_vars or a.has_decimal or b.has_decimal:
        return False
    x, y = a.values[0], b.values[0]
    if abs(x) > 1e9 or abs(y) > 1e9:
        return False
    return abs(x - y) <= 1e-12 * max(1.0, abs(x), abs(y))
