"""The generation prompt: level rubric, topic, reference problems of that level, strict output format.

`build_messages(level, topic, references, n)` returns chat messages (system + user). The user message states
the requested level with the full 1-5 rubric, shows the reference problems, and asks for `n` new problems in
the tag format that `parsing.parse_completion` reads:

    <problem>
    statement
    </problem>
    <answer>final answer, or UNKNOWN</answer>

`ReferenceSampler` draws the reference problems from a seed pool: for each (level, topic) it walks a seeded
permutation in windows of k, so consecutive calls for the same pair show different problems until the pool of
that pair is exhausted (then a fresh permutation starts). The draw for call visit j is a pure function of
(seed, level, topic, j): a resumed run shows exactly what an uninterrupted run would have shown.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence

from .data import SeedProblem

# Slug -> the MATH `subject` name (generated records carry the MATH name in `subject`).
TOPICS: dict[str, str] = {
    "algebra": "Algebra",
    "counting_and_probability": "Counting & Probability",
    "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra",
    "number_theory": "Number Theory",
    "prealgebra": "Prealgebra",
    "precalculus": "Precalculus",
}

TOPIC_SCOPE: dict[str, str] = {
    "algebra": "linear equations and inequalities, systems, quadratics, functions and their graphs, exponents "
               "and radicals, arithmetic and geometric sequences, word problems",
    "counting_and_probability": "permutations and combinations, the inclusion-exclusion principle, binomial "
                                "coefficients, probability of events, expected value, casework",
    "geometry": "triangles, circles, polygons, areas and perimeters, similarity, the Pythagorean theorem, "
                "coordinate geometry, volumes and surface areas (described fully in words, no diagrams)",
    "intermediate_algebra": "polynomials and their roots, inequalities, functional equations, complex numbers, "
                            "logarithms, sequences and series, conic sections",
    "number_theory": "divisibility, primes and factorisation, gcd and lcm, modular arithmetic, bases, digits, "
                     "Diophantine equations",
    "prealgebra": "fractions, decimals, percents, ratios, order of operations, basic equations, simple "
                  "geometry and statistics, everyday word problems",
    "precalculus": "trigonometry and identities, vectors, matrices and determinants, complex numbers in polar "
                   "form, parametric and polar coordinates",
}

_ALIASES = {
    "probability": "counting_and_probability", "counting": "counting_and_probability",
    "combinatorics": "counting_and_probability", "counting_probability": "counting_and_probability",
    "nt": "number_theory", "numbers": "number_theory", "precalc": "precalculus", "pre_algebra": "prealgebra",
    "int_algebra": "intermediate_algebra",
}

LEVEL_RUBRIC: dict[int, str] = {
    1: "one or two routine steps with a single standard fact or formula; small, friendly numbers; a strong "
       "middle-school student solves it in under a minute",
    2: "two or three routine steps applying one standard technique directly; little room for error",
    3: "several steps that combine two ideas; the solver must choose an approach; typical of early AMC 10 "
       "problems",
    4: "multi-step reasoning with a non-obvious idea, an auxiliary construction or careful casework; typical "
       "of mid-to-late AMC 10/12 problems",
    5: "hard problems that need a key insight and sustained, careful work; typical of late AMC 12 or easier "
       "AIME problems",
}

SYSTEM_PROMPT = ("You are an expert writer of competition mathematics problems. You write original, "
                 "self-contained problems, each with exactly one checkable final answer, and you follow the "
                 "requested output format exactly.")


def topic_slug(name: str) -> str:
    """Canonical slug of a topic name (`Counting & Probability`, `counting-and-probability`, `probability`)."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.strip().lower().replace("&", " and ")).strip("_")
    slug = _ALIASES.get(slug, slug)
    if slug not in TOPICS:
        raise ValueError(f"unknown topic {name!r}; known topics: {', '.join(TOPICS)}")
    return slug


def build_messages(level: int, topic: str, references: Sequence[str], n: int = 25) -> list[dict[str, str]]:
    """Chat messages asking for `n` new problems of `level` in `topic`, showing `references`."""
    if level not in LEVEL_RUBRIC:
        raise ValueError(f"level must be 1-5, got {level!r}")
    if n < 1:
        raise ValueError("n must be at least 1")
    slug = topic_slug(topic)
    rubric = "\n".join(f"- Level {lv}: {text}." for lv, text in LEVEL_RUBRIC.items())
    parts = [
        f"Write {n} new, original math problems.",
        "",
        f"Topic: {TOPICS[slug]} ({TOPIC_SCOPE[slug]}).",
        f"Difficulty: level {level} on the 1-5 scale of the MATH competition dataset.",
        "",
        "Difficulty rubric:",
        rubric,
        "",
        f"Every problem must be level {level}: {LEVEL_RUBRIC[level]}.",
    ]
    if references:
        parts += ["",
                  f"Here are {len(references)} reference problems of level {level}. They show the style and the "
                  "difficulty only: do not copy them, paraphrase them or change only their numbers, and do not "
                  "reproduce problems from well-known contests or textbooks.", ""]
        for i, ref in enumerate(references, 1):
            parts += [f"Reference {i}:", ref.strip(), ""]
    parts += [
        "Requirements:",
        "- Each problem is self-contained, asks exactly one clear question and has a single final answer "
        "(a number, an expression, an interval, a point, ...). No proofs, no multiple choice.",
        "- Never put the answer, a hint or a solution inside the problem statement.",
        "- Write all mathematics in LaTeX between $...$; write money as \\$5.",
        "- No diagrams: describe every figure fully in words.",
        f"- Vary the sub-topics, settings and numbers: the {n} problems must all be different from each other.",
        "",
        f"Output format (strict): output exactly {n} blocks like the one below, one after another, and nothing "
        "else. Put only the final answer inside <answer>, or UNKNOWN if you are not sure of it.",
        "",
        "<problem>",
        "the problem statement",
        "</problem>",
        "<answer>the final answer</answer>",
    ]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(parts)}]


def render_plain(messages: Sequence[dict[str, str]]) -> str:
    """A plain-text rendering of chat messages for a model without a chat template."""
    blocks = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(blocks) + "\n\nAssistant:"


def stable_int(*parts: object, bits: int = 63) -> int:
    """A process-independent integer hash of `parts` (seeds must not depend on PYTHONHASHSEED)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


class ReferenceSampler:
    """Draws k reference problems of a level (and topic, when the pool knows subjects) per call.

    `exclude(text) -> bool` drops pool problems that must never be shown (e.g. near copies of benchmark
    problems); `max_chars` and `allow_diagrams` keep the prompt short and diagram-free.
    """

    def __init__(self, pool: Sequence[SeedProblem], seed: int = 0, k: int = 4, *,
                 exclude: Callable[[str], bool] | None = None, max_chars: int = 1200,
                 allow_diagrams: bool = False):
        if k < 0:
            raise ValueError("k must be >= 0")
        self.seed, self.k = seed, k
        self._exclude = exclude
        self._by_level: dict[int, list[SeedProblem]] = {}
        self._by_pair: dict[tuple[int, str], list[SeedProblem]] = {}
        for p in pool:
            if p.level is None or len(p.text) > max_chars or (not allow_diagrams and "[asy]" in p.text):
                continue
            self._by_level.setdefault(p.level, []).append(p)
            slug = self._slug(p.subject)
            if slug is not None:
                self._by_pair.setdefault((p.level, slug), []).append(p)
        self._filtered: set[tuple] = set()
        self._perms: dict[tuple, list[SeedProblem]] = {}

    @staticmethod
    def _slug(subject: str | None) -> str | None:
        if not subject:
            return None
        try:
            return topic_slug(subject)
        except ValueError:
            return None

    def _bucket(self, key: tuple) -> list[SeedProblem]:
        items = self._by_pair.get(key) if len(key) == 2 else self._by_level.get(key[0])
        if items is None:
            return []
        if key not in self._filtered and self._exclude is not None:
            items[:] = [p for p in items if not self._exclude(p.text)]
        self._filtered.add(key)
        return items

    def _window(self, key: tuple, visit: int, k: int) -> list[SeedProblem]:
        bucket = self._bucket(key)
        if not bucket or k == 0:
            return []
        k = min(k, len(bucket))
        out: list[SeedProblem] = []
        pos = visit * k
        while len(out) < k and pos < visit * k + 2 * len(bucket):
            epoch, offset = divmod(pos, len(bucket))
            perm = self._perms.get((key, epoch))
            if perm is None:
                perm = list(bucket)
                random.Random(stable_int("refs", self.seed, *key, epoch)).shuffle(perm)
                self._perms = {kk: v for kk, v in self._perms.items() if kk[0] != key}  # keep one epoch
                self._perms[(key, epoch)] = perm
            if perm[offset] not in out:  # a window across two epochs may meet a problem twice
                out.append(perm[offset])
            pos += 1
        return out

    def draw(self, level: int, topic: str | None, visit: int) -> list[SeedProblem]:
        """The references for the `visit`-th call (0-based) asking for (`level`, `topic`)."""
        slug = topic_slug(topic) if topic else None
        refs = self._window((level, slug), visit, self.k) if slug else []
        if len(refs) < self.k:  # pool has no (or too few) problems of this topic: fill from the level
            seen = {p.id for p in refs}
            extra = [p for p in self._window((level,), visit, self.k) if p.id not in seen]
            refs += extra[:self.k - len(refs)]
        if not refs and self.k > 0:
            raise ValueError(f"the seed pool has no usable problems of level {level}")
        return refs
