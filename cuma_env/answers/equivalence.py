"""Mathematical equivalence of answers, and clustering of a group of answers, under a hard deadline.

Three layers, cheapest first:
1. canonical keys (`normalize.analyse`): equal keys are equivalent;
2. pure-python decisions: exact numbers, long decimals vs fractions, element-wise tuples/sets/matrices,
   and numeric fingerprints that prove expressions *different* (or equal, for small constant values);
3. math-verify/sympy in a killable worker process (`_worker`), only for pairs still undecided, one batched
   request per call, with results cached by key pair.
A call never takes longer than `timeout` seconds, in any thread: when the deadline passes the worker is
killed (and restarted lazily) and undecided pairs count as "not equivalent". Hostile answers (giant
powers, megabyte strings, deep nesting) are caught by layer 1/2 guards and never reach sympy.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

from . import _worker
from .normalize import Canon, analyse
from .numeric import Fingerprint, Unsafe, fingerprint, fingerprints_differ, fingerprints_prove_equal, numbers_equivalent

_SAFETY = 0.08                      # seconds kept back from the caller's timeout for cleanup
_DANGEROUS = re.compile(r"\d{3,}\s*!|[)}]\s*!|\^\s*\{\s*-?\d+\s*\^|\^\s*\{?\s*-?\d{6,}|\\underbrace|\\overbrace")


_RELATIONAL = re.compile(r"[<>=]|\\(?:leq|geq|neq|in|cup|cap|setminus|pm|mp|emptyset|varnothing)(?![a-zA-Z])")


_ORDER_OR_UNION = re.compile(r"[<>]|\\(?:leq|geq|cup|cap|setminus|in)(?![a-zA-Z])")


class _PairCache:
    """Thread-safe LRU of sympy verdicts by unordered key pair; also remembers answers that hung sympy."""

    def __init__(self, size: int = 200_000) -> None:
        self.size, self.lock = size, threading.Lock()
        self.data: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.poisoned: OrderedDict[str, None] = OrderedDict()

    @staticmethod
    def _pair(a: str, b: str) -> tuple[str, str]:
        return (a, b) if a <= b else (b, a)

    def get(self, a: str, b: str) -> bool | None:
        with self.lock:
            key = self._pair(a, b)
            if key in self.data:
                self.data.move_to_end(key)
                return self.data[key]
            return False if (a in self.poisoned or b in self.poisoned) else None

    def put(self, a: str, b: str, value: bool) -> None:
        with self.lock:
            self.data[self._pair(a, b)] = value
            if len(self.data) > self.size:
                self.data.popitem(last=False)

    def poison(self, key: str) -> None:
        with self.lock:
            self.poisoned[key] = None
            if len(self.poisoned) > 10_000:
                self.poisoned.popitem(last=False)


_CACHE = _PairCache()


@lru_cache(maxsize=65536)
def _fingerprint(text: str) -> Fingerprint | None | str:
    """Fingerprint of a scalar answer, or "unsafe" when evaluating it (or sympy) could blow up."""
    if _DANGEROUS.search(text):
        return "unsafe"
    try:
        return fingerprint(text)
    except Unsafe:
        return "unsafe"
    except (RecursionError, MemoryError):
        return "unsafe"


def _sympy_text(c: Canon) -> str | None:
    if c.sympy_text is None or _DANGEROUS.search(c.sympy_text):
        return None
    if c.kind in ("num", "expr") and _fingerprint(c.normalized) == "unsafe":
        return None
    return c.sympy_text


def _compare_scalars(a: Canon, b: Canon) -> bool | None:
    if a.kind == "num" and b.kind == "num":
        return numbers_equivalent(a.number, b.number)  # type: ignore[arg-type]
    for num, other in ((a, b), (b, a)):  # a number is never an equation, inequality or set expression
        if num.kind == "num" and _RELATIONAL.search(other.normalized):
            return False
    fa, fb = _fingerprint(a.normalized), _fingerprint(b.normalized)
    if fa == "unsafe" or fb == "unsafe":
        return False
    for fx, other in ((fa, b), (fb, a)):  # plain arithmetic is never an inequality or a set expression
        if isinstance(fx, Fingerprint) and _ORDER_OR_UNION.search(other.normalized):
            return False
    if not isinstance(fa, Fingerprint) or not isinstance(fb, Fingerprint):
        return None
    for num, other in ((a, b), (b, a)):  # a long decimal approximating a closed form: 0.8660254 ~ sqrt(3)/2
        if num.kind == "num" and (num.number.decimals or 0) >= 6 and other.kind == "expr":  # type: ignore[union-attr]
            fo = fa if other is a else fb
            if not fo.has_vars and not fo.has_decimal:  # type: ignore[union-attr]
                value = float(num.number.value)  # type: ignore[union-attr]
                tolerance = 10.0 ** -num.number.decimals + 1e-15 * max(1.0, abs(value))  # type: ignore[union-attr]
                return abs(value - fo.values[0]) < tolerance  # type: ignore[union-attr]
    if fingerprints_differ(fa, fb):
        return False
    if fingerprints_prove_equal(fa, fb):
        return True
    return None


def _match_unordered(xs: tuple[Canon, ...], ys: tuple[Canon, ...]) -> bool | None:
    if len(xs) != len(ys):
        return None
    verdicts = [[_pure_compare(x, y) for y in ys] for x in xs]
    if any(all(v is False for v in row) for row in verdicts):
        return False
    if any(all(verdicts[i][j] is False for i in range(len(xs))) for j in range(len(ys))):
        return False
    used: set[int] = set()
    for row in verdicts:  # greedy matching on proven-equal pairs
        j = next((j for j, v in enumerate(row) if v is True and j not in used), None)
        if j is None:
            return None
        used.add(j)
    return True


def _match_ordered(xs: tuple[Canon, ...], ys: tuple[Canon, ...]) -> bool | None:
    if len(xs) != len(ys):
        return False
    verdicts = [_pure_compare(x, y) for x, y in zip(xs, ys)]
    if any(v is False for v in verdicts):
        return False
    return True if all(verdicts) else None


def _scalar_vs_container(scalar: Canon, box: Canon) -> bool | None:
    text = scalar.normalized
    if box.kind == "matrix":
        return None if "\\begin" in text else False
    if box.kind == "seq":  # an inequality can be an interval (`0<x<1` ~ `(0,1)`); `\pm` is never a tuple
        return None if _ORDER_OR_UNION.search(text) else False
    if "\\pm" in text or "\\mp" in text or _ORDER_OR_UNION.search(text):
        return None  # `\pm 2` ~ `\{-2, 2\}`
    if len(box.elements) == 1:
        return _pure_compare(scalar, box.elements[0])
    return False


def _pure_compare(a: Canon, b: Canon) -> bool | None:
    """True/False when pure python can decide, None when sympy must."""
    if a.key == b.key:
        return True
    if a.kind in ("long", "text") or b.kind in ("long", "text"):
        return False
    scalar_a, scalar_b = a.kind in ("num", "expr"), b.kind in ("num", "expr")
    if scalar_a and scalar_b:
        return _compare_scalars(a, b)
    if scalar_a or scalar_b:
        return _scalar_vs_container(a if scalar_a else b, b if scalar_a else a)
    if a.kind == b.kind == "seq":
        return _match_ordered(a.elements, b.elements) if a.brackets == b.brackets else False
    if a.kind == b.kind == "matrix":
        return _match_ordered(a.elements, b.elements) if a.brackets == b.brackets else False
    if a.kind == b.kind == "set":
        return _match_unordered(a.elements, b.elements)
    kinds = {a.kind, b.kind}
    if kinds == {"matrix", "seq"}:  # a column/row vector written as a tuple
        mat, seq = (a, b) if a.kind == "matrix" else (b, a)
        if 1 in (int(x) for x in mat.brackets.split("x")) and seq.brackets == "()":
            return _match_ordered(mat.elements, seq.elements)
        return False
    if kinds == {"seq", "set"}:
        seq, st = (a, b) if a.kind == "seq" else (b, a)
        if st.brackets == "{}":
            return False  # a tuple is never a set: (1,2) != {1,2}
        return _match_ordered(seq.elements, st.elements)  # "(1, 2)" written without parentheses
    return None


def _cluster(canons: list[Canon], timeout: float) -> list[int]:
    """Component root (index into canons) for each distinct canon, under the deadline."""
    start = time.monotonic()
    deadline = start + max(0.0, timeout) - min(_SAFETY, max(0.0, timeout) / 4)
    pure_deadline = max(deadline, start + 0.5)  # timeout <= 0 still gets the (fast) pure-python layers
    n = len(canons)
    root = list(range(n))

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    pending: list[tuple[int, int]] = []
    for j in range(1, n):
        rejected: set[int] = set()
        for i in range(j):
            ri = find(i)
            if ri == find(j) or ri in rejected:
                continue
            if time.monotonic() > pure_deadline:
                break
            verdict = _pure_compare(canons[i], canons[j])
            if verdict is None:
                verdict = _CACHE.get(canons[i].key, canons[j].key)
            if verdict is True:
                root[ri] = find(j)
            elif verdict is False:
                rejected.add(ri)
            elif _sympy_text(canons[i]) is not None and _sympy_text(canons[j]) is not None:
                pending.append((i, j))
    if pending and timeout > 0 and time.monotonic() < deadline:
        used = sorted({k for p in pending for k in p})
        local = {k: idx for idx, k in enumerate(used)}
        items = [_sympy_text(canons[k]) or "" for k in used]
        try:
            results, blamed = _worker.compare_pairs(items, [(local[i], local[j]) for i, j in pending], deadline)
        except Exception:  # a broken worker must never reach the caller: undecided means "not equivalent"
            results, blamed = {}, None
        for (li, lj), eq in results.items():
            i, j = used[li], used[lj]
            _CACHE.put(canons[i].key, canons[j].key, eq)
            if eq:
                root[find(i)] = find(j)
        if isinstance(blamed, int):
            _CACHE.poison(canons[used[blamed]].key)
        elif isinstance(blamed, tuple):
            _CACHE.put(canons[used[blamed[0]]].key, canons[used[blamed[1]]].key, False)
    return [find(k) for k in range(n)]


def is_equivalent(a: str, b: str, *, timeout: float = 2.0) -> bool:
    """True when the two answers are mathematically equivalent; False when not, or when undecidable in time.

    Never raises for str inputs and returns within `timeout` seconds from any thread. `timeout <= 0`
    uses the pure-python layers only.
    """
    if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
        return False
    ca, cb = analyse(a), analyse(b)
    if not ca.key or not cb.key:  # nothing left after normalisation ("$ $", "\boxed{}"): no answer
        return False
    if ca.key == cb.key:
        return True
    roots = _cluster([ca, cb], timeout)
    return roots[0] == roots[1]


def cluster_answers(answers: Sequence[str | None], *, timeout: float = 2.0) -> list[int | None]:
    """Cluster id per answer (0, 1, 2, ... in order of first occurrence); None for None/empty answers
    (including strings that normalise to nothing, such as "$ $").

    Equivalent answers share an id. Identical canonical keys are merged first, then the remaining
    distinct keys are compared in pure python and, if still undecided, in one batched sympy request.
    """
    keys: dict[str, int] = {}
    canons: list[Canon] = []
    slot: list[int | None] = []
    for ans in answers:
        if not isinstance(ans, str) or not ans.strip():
            slot.append(None)
            continue
        c = analyse(ans)
        if not c.key:  # normalises to nothing: treated like a missing answer
            slot.append(None)
            continue
        if c.key not in keys:
            keys[c.key] = len(canons)
            canons.append(c)
        slot.append(keys[c.key])
    roots = _cluster(canons, timeout) if len(canons) > 1 else list(range(len(canons)))
    ids: dict[int, int] = {}
    out: list[int | None] = []
    for s in slot:
        if s is None:
            out.append(None)
        else:
            out.append(ids.setdefault(roots[s], len(ids)))
    return out


def prewarm(wait: bool = False, timeout: float = 30.0) -> bool:
    """Start a sympy worker in the background (about a second of imports) so the first vote is fast."""
    return _worker.POOL.prewarm(wait=wait, timeout=timeout)


def matches_reference(answer: str | None, reference: str | None, *, timeout: float = 2.0) -> bool:
    """Is an extracted answer (None: no answer) equivalent to a hidden reference (None: none)? For diagnostics
    and evaluation; `None` on either side never matches."""
    if answer is None or reference is None:
        return False
    return is_equivalent(answer, str(reference), timeout=timeout)
