"""Exact and near-duplicate detection of problem statements.

Each text is seen in two views:

- `tokens`: a math-aware token sequence: case, LaTeX spelling variants (`\\dfrac`/`\\frac`, `\\le`/`\\leq`),
  math delimiters, spacing commands, braces and punctuation are normalised away; words, numbers, LaTeX
  commands and operators remain (n-grams of `n` tokens, default 3);
- `words`: whitespace-separated words, lower-cased, outer punctuation stripped (n-grams of `word_n` words,
  default 5): the measure common dedup tools and the data README use.

Two texts are exact duplicates when their token sequences are equal, and near duplicates when in either view
the Jaccard similarity of their n-gram sets ("shingles") reaches `threshold`, or one mostly contains the
other: the overlap coefficient |A & B| / min(|A|, |B|) reaches `overlap` while the smaller set has at least
`min_overlap_shingles` shingles (a benchmark problem pasted inside a longer statement).

This is the set measure that MinHash estimates, computed exactly: an inverted index from shingle to documents
finds candidates, probing only the rarest shingles of the query that any match must share (prefix filtering),
and each candidate is then scored exactly, so "no near duplicate" is a guarantee, not an estimate. Shingles
are Python string hashes: the index lives in memory and is rebuilt per process.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .data import eval_sets, load_eval_texts, load_extra_texts

# Spelling variants that render the same, mapped to one form.
_LATEX_SYNONYMS = [
    (re.compile(r"\\[dt]frac(?![a-z])"), r"\\frac"),
    (re.compile(r"\\[dt]binom(?![a-z])"), r"\\binom"),
    (re.compile(r"\\(?:le|leqslant)(?![a-z])"), r"\\leq"),
    (re.compile(r"\\(?:ge|geqslant)(?![a-z])"), r"\\geq"),
    (re.compile(r"\\(?:ne)(?![a-z])"), r"\\neq"),
    (re.compile(r"\\(?:to)(?![a-z])"), r"\\rightarrow"),
]
# Commands with no content of their own: layout, spacing, sizing, text wrappers (their argument is kept).
_DROP_COMMANDS = re.compile(
    r"\\(?:left|right|big|Big|bigg|Bigg|displaystyle|textstyle|quad|qquad|text|textbf|textit|mathrm|mathbf|"
    r"mathit|operatorname|emph|mbox|hbox|boxed|limits|nolimits)(?![a-zA-Z])")
_SPACING = re.compile(r"\\[,;:! ]|~|\\\\")
_DELIMS = re.compile(r"\\[()\[\]]|\$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TOKEN = re.compile(r"\\[a-z]+|[a-z]+|\d+(?:\.\d+)?|[-+*/=<>^_()|!%]")


def tokens(text: str) -> list[str]:
    """The normalised token sequence dedup compares (words, numbers, LaTeX commands, operators)."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u2019", "'").replace("\u2212", "-").replace("\u00d7", "\\times")
    for pattern, repl in _LATEX_SYNONYMS:
        text = pattern.sub(repl, text)
    text = _DROP_COMMANDS.sub(" ", text)
    text = _SPACING.sub(" ", text)
    text = _DELIMS.sub(" ", text)
    text = _THOUSANDS.sub("", text)
    return _TOKEN.findall(text.lower())


_OUTER_PUNCT = ".,;:!?\"'()[]{}$*`"


def words(text: str) -> list[str]:
    """Whitespace words, lower-cased, without outer punctuation (the `words` view)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()
    return [w for w in (w.strip(_OUTER_PUNCT) for w in text.split()) if w]


def exact_key(text: str) -> str:
    """Key under which exact duplicates (after normalisation) collide."""
    return _joined(tokens(text))


def _joined(toks: list[str]) -> str:
    return " ".join(toks)


def shingles(toks: list[str], n: int = 3) -> frozenset[int]:
    """Hashed token n-grams; a text shorter than n tokens is one shingle (itself)."""
    if not toks:
        return frozenset()
    if len(toks) < n:
        return frozenset((hash(tuple(toks)),))
    return frozenset(map(hash, zip(*(toks[i:] for i in range(n)))))


def jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of the shingle sets of two texts (1.0 for two empty texts)."""
    sa, sb = shingles(tokens(a), n), shingles(tokens(b), n)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@dataclass(frozen=True)
class Match:
    """Why a text counts as a duplicate: the closest indexed document, the view and the scores."""

    key: str
    kind: str  # "exact" or "near"
    jaccard: float
    overlap: float
    view: str = "tokens"

    def describe(self) -> str:
        return (f"{self.kind} duplicate of {self.key} ({self.view}: jaccard {self.jaccard:.2f}, "
                f"overlap {self.overlap:.2f})")


# Against the evaluation sets a match is contamination, so the bar is low: a benchmark problem with one to
# three numbers changed, a name changed, or pasted inside a longer text is caught (measured on MATH-500 +
# GSM8K test + AIME24 + AMC23: about 99% / 97% / 92% of one/two/three-number edits), at the cost of flagging
# about 1-2% of the MATH training pool (mostly template variants of benchmark problems).
EVAL_INDEX_DEFAULTS = {"n": 3, "word_n": 5, "threshold": 0.5, "overlap": 0.9, "min_overlap_shingles": 4}
# Against the seed pool and what was already generated a match is lost diversity (a template variant with
# a number or two changed): a higher bar.
TRAIN_INDEX_DEFAULTS = {"n": 3, "word_n": 5, "threshold": 0.6, "overlap": 0.9, "min_overlap_shingles": 12}


class _View:
    __slots__ = ("name", "n", "sets", "postings")

    def __init__(self, name: str, n: int):
        self.name, self.n = name, n
        self.sets: list[frozenset[int]] = []
        self.postings: defaultdict[int, list[int]] = defaultdict(list)  # only read after an `in` test


class NearDupIndex:
    """Documents indexed for exact and near-duplicate queries (see the module docstring).

    `n` / `word_n`: n-gram sizes of the token and word views (`word_n=0` turns the word view off).
    `threshold`: Jaccard at or above which two texts are near duplicates (default 0.6).
    `overlap` / `min_overlap_shingles`: containment rule (default 0.9, smaller set at least 12 shingles).
    """

    def __init__(self, *, n: int = 3, word_n: int = 5, threshold: float = 0.6, overlap: float = 0.9,
                 min_overlap_shingles: int = 12, name: str = "index"):
        if not 0.0 < threshold <= 1.0 or not 0.0 < overlap <= 1.0:
            raise ValueError("threshold and overlap must be in (0, 1]")
        if n < 1 or word_n < 0 or min_overlap_shingles < 1:
            raise ValueError("need n >= 1, word_n >= 0, min_overlap_shingles >= 1")
        self.n, self.word_n, self.threshold, self.overlap = n, word_n, threshold, overlap
        self.min_overlap_shingles = min_overlap_shingles
        self.name = name
        self._keys: list[str] = []
        self._exact: dict[str, int] = {}
        self._views = [_View("tokens", n)] + ([_View("words", word_n)] if word_n else [])

    @classmethod
    def build(cls, items: Iterable[tuple[str, str]], **kwargs) -> NearDupIndex:
        """An index over `(key, text)` pairs."""
        index = cls(**kwargs)
        for key, text in items:
            index.add(key, text)
        return index

    def __len__(self) -> int:
        return len(self._keys)

    def _shingle_sets(self, text: str, toks: list[str]) -> list[frozenset[int]]:
        return [shingles(toks if view.name == "tokens" else words(text), view.n) for view in self._views]

    def add(self, key: str, text: str) -> None:
        """Index one document (an exact repeat of an indexed text is kept once, under its first key)."""
        toks = tokens(text)
        ekey = _joined(toks)
        if ekey in self._exact:
            return
        doc = len(self._keys)
        self._keys.append(key)
        self._exact[ekey] = doc
        for view, sh in zip(self._views, self._shingle_sets(text, toks)):
            view.sets.append(sh)
            postings = view.postings
            for s in sh:
                postings[s].append(doc)

    def query(self, text: str) -> Match | None:
        """The closest indexed document within duplicate distance of `text`, or None."""
        toks = tokens(text)
        doc = self._exact.get(_joined(toks))
        if doc is not None:
            return Match(self._keys[doc], "exact", 1.0, 1.0)
        best: Match | None = None
        for view, sa in zip(self._views, self._shingle_sets(text, toks)):
            match = self._query_view(view, sa)
            if match is not None and (best is None or (match.jaccard, match.overlap) > (best.jaccard, best.overlap)):
                best = match
        return best

    def _query_view(self, view: _View, sa: frozenset[int]) -> Match | None:
        if not sa:
            return None
        size = len(sa)
        # Any match shares at least `need` shingles with the query: Jaccard >= t needs |A & B| >= t |A|, and
        # containment needs |A & B| >= overlap * min_overlap_shingles. By pigeonhole it then shares one among
        # the `size - need + 1` query shingles with the shortest postings, so only those are probed.
        need = math.ceil(self.threshold * size - 1e-9)
        if size >= self.min_overlap_shingles:
            need = min(need, math.ceil(self.overlap * self.min_overlap_shingles - 1e-9))
        need = max(need, 1)
        postings = view.postings
        probe = sorted((s for s in sa if s in postings), key=lambda s: len(postings[s]))
        candidates: set[int] = set()
        for s in probe[:size - need + 1]:
            candidates.update(postings[s])
        best: Match | None = None
        for doc in candidates:
            sb = view.sets[doc]
            common = len(sa & sb)
            jac = common / (size + len(sb) - common)
            smaller = min(size, len(sb))
            ovl = common / smaller
            if jac >= self.threshold or (smaller >= self.min_overlap_shingles and ovl >= self.overlap):
                if best is None or (jac, ovl) > (best.jaccard, best.overlap):
                    best = Match(self._keys[doc], "near", jac, ovl, view.name)
        return best

    def __contains__(self, text: str) -> bool:
        return self.query(text) is not None

    def __repr__(self) -> str:
        return (f"NearDupIndex({self.name!r}, docs={len(self)}, n={self.n}, word_n={self.word_n}, "
                f"threshold={self.threshold}, overlap={self.overlap}/{self.min_overlap_shingles})")


def build_eval_index(data_dir: str | Path | None = None, *, names: Iterable[str] | None = None,
                     extra_files: Iterable[str | Path] = (), **kwargs) -> NearDupIndex:
    """The contamination index: every bench's evaluation set (`eval_sets()`: MATH-500, GSM8K test, AIME24, AMC23
    and any task added) or `names`, plus any `extra_files`.

    Keyword arguments override `EVAL_INDEX_DEFAULTS`. Missing files raise `DataFileMissing`.
    """
    params = {**EVAL_INDEX_DEFAULTS, **kwargs}
    params.setdefault("name", "eval")
    index = NearDupIndex(**params)
    texts = load_eval_texts(data_dir, list(names) if names is not None else list(eval_sets()))
    for items in texts.values():
        for key, text in items:
            index.add(key, text)
    for path in extra_files:
        for key, text in load_extra_texts(path):
            index.add(key, text)
    return index
