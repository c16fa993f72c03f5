"""Exact and near-duplicate detection (curricula.curation.dedup), on real benchmark files where it matters."""

import random
import re
import time
from pathlib import Path

import pytest

from curricula.curation.data import DataFileMissing, load_eval_texts, load_seed_pool
from curricula.curation.dedup import (
    EVAL_INDEX_DEFAULTS,
    NearDupIndex,
    build_eval_index,
    exact_key,
    jaccard,
    shingles,
    tokens,
    words,
)
from curricula.curation.parsing import parse_completion

FIXTURES = Path(__file__).parent / "fixtures" / "curation"



@pytest.fixture(scope="module")
def eval_texts(data_dir):
    return load_eval_texts(data_dir)


@pytest.fixture(scope="module")
def eval_index(data_dir):
    start = time.perf_counter()
    index = build_eval_index(data_dir)
    print(f"\neval index: {len(index)} problems built in {time.perf_counter() - start:.2f} s")
    return index


# ------------------------------------------------------------------------------------------------- units

def test_normalisation_ignores_spelling_that_renders_the_same():
    a = "Evaluate $\\left(\\dfrac{1}{2}\\right)^{2}$ for 1,000 people."
    b = "evaluate   \\(( \\frac{1}{2} )^{2}\\) for 1000 people"
    assert exact_key(a) == exact_key(b)
    assert tokens("Let $x \\le 3$.") == tokens("Let $x\\leq 3$.")
    assert tokens("Find $\\text{the value}$ of $x$.") == ["find", "the", "value", "of", "x"]


def test_exact_near_and_distinct():
    index = NearDupIndex.build([
        ("a", "A right triangle has legs of lengths 6 and 8. What is the length of its hypotenuse?"),
        ("b", "How many positive divisors does 360 have?"),
    ])
    assert index.query("a right  triangle has legs of lengths 6 and 8.  What is the length of its hypotenuse?").kind \
        == "exact"
    near = index.query("A right triangle has legs of lengths 6 and 9. What is the length of its hypotenuse?")
    assert near is not None and near.key == "a" and near.kind == "near" and 0.6 <= near.jaccard < 1
    assert index.query("What is the probability that two fair dice show the same number?") is None
    assert index.query("How many positive divisors does 720 have?") is None  # short and numerically different


def test_containment_catches_a_problem_pasted_inside_a_longer_one():
    problem = "In how many ways can 8 people sit around a round table if three of them must sit together?"
    index = NearDupIndex.build([("p", problem)])
    padded = "Warm-up story: the club meets every Friday and likes puzzles a lot. " * 3 + problem
    assert jaccard(problem, padded) < 0.7
    match = index.query(padded)
    assert match is not None and match.overlap >= 0.9


def test_short_texts_and_degenerate_input():
    index = NearDupIndex.build([("s", "Compute $7!$.")])
    assert index.query("Compute $7!$.").kind == "exact"
    assert index.query("") is None and index.query("$$") is None
    assert shingles([]) == frozenset() and len(shingles(["a", "b"])) == 1


@pytest.mark.parametrize("word_n", [0, 5])
def test_index_agrees_with_brute_force(word_n):
    """The prefix-filtered lookup finds exactly the matches an all-pairs comparison finds, in both views."""
    rng = random.Random(word_n)
    vocab = "the of a sum value find what is integer positive number of ways triangle circle area".split()
    docs = [" ".join(rng.choice(vocab) if rng.random() < 0.7 else str(rng.randint(1, 9))
                     for _ in range(rng.randint(3, 30))) for _ in range(300)]
    params = {"n": 3, "word_n": word_n, "threshold": 0.5, "overlap": 0.9, "min_overlap_shingles": 4}
    index = NearDupIndex.build(((str(i), d) for i, d in enumerate(docs)), **params)

    def views(text):
        out = [shingles(tokens(text), 3)]
        return out + [shingles(words(text), word_n)] if word_n else out

    def close(sa, sb):
        if not sa or not sb:
            return False
        common = len(sa & sb)
        return (common / len(sa | sb) >= params["threshold"]
                or (min(len(sa), len(sb)) >= params["min_overlap_shingles"]
                    and common / min(len(sa), len(sb)) >= params["overlap"]))

    doc_views = [views(d) for d in docs]
    keys = {exact_key(d) for d in docs}
    queries = docs[:40] + [d + " " + rng.choice(vocab) for d in docs[40:120]] + \
        [" ".join(d.split()[1:]) for d in docs[120:200]]
    for q in queries:
        qv = views(q)
        expected = exact_key(q) in keys or any(close(a, b) for dv in doc_views for a, b in zip(qv, dv))
        assert (index.query(q) is not None) == expected, q


# ------------------------------------------------------------------------------------------------- real data

def test_eval_index_covers_the_four_benchmarks(eval_index, eval_texts):
    assert {name: len(items) for name, items in eval_texts.items()} == {
        "math500": 500, "gsm8k_test": 1319, "aime24": 30, "amc23": 40}
    assert len(eval_index) >= 1880  # a few benchmark texts repeat exactly and are indexed once
    for name, items in eval_texts.items():
        for _, text in items[::7]:
            assert eval_index.query(text) is not None, (name, text[:80])


def _change_numbers(text: str, rng: random.Random, k: int) -> str | None:
    nums = list(re.finditer(r"\d+", text))
    if not nums:
        return None
    for m in sorted(rng.sample(nums, min(k, len(nums))), key=lambda m: -m.start()):
        text = text[:m.start()] + str(int(m.group()) + rng.randint(1, 9)) + text[m.end():]
    return text


def test_edited_benchmark_problems_are_caught(eval_index, eval_texts):
    rng = random.Random(1)
    items = [text for group in eval_texts.values() for _, text in group][::2]
    one = [t for t in (_change_numbers(t, rng, 1) for t in items) if t is not None]
    two = [t for t in (_change_numbers(t, rng, 2) for t in items) if t is not None]
    renamed = [t.replace("Janet", "Maria").replace("John", "Peter") for t in items]
    pasted = ["Here is a problem from my homework that I found tricky. " + t + " Please be careful." for t in items]

    def rate(texts):
        return sum(eval_index.query(t) is not None for t in texts) / len(texts)

    assert rate(one) >= 0.97
    assert rate(two) >= 0.93
    assert rate(renamed) >= 0.99
    assert rate(pasted) >= 0.98


def test_few_training_pool_problems_are_flagged(eval_index, data_dir):
    pool = load_seed_pool(data_dir=data_dir)
    sample = random.Random(2).sample(pool, 2000)
    flagged = sum(eval_index.query(p.text) is not None for p in sample)
    assert flagged <= 0.03 * len(sample)


def test_stricter_than_the_data_readme_measure(eval_index, data_dir, eval_texts):
    """Every train-pool problem with word 5-gram Jaccard >= 0.7 to a MATH-500 problem (the measure the data
    README uses; it reports 23 such pairs) is flagged by the contamination index."""
    def grams(text):
        words = " ".join(text.lower().split()).split()
        return {tuple(words[i:i + 5]) for i in range(max(1, len(words) - 4))}

    math500 = [grams(t) for _, t in eval_texts["math500"]]
    postings: dict = {}
    for i, g in enumerate(math500):
        for gram in g:
            postings.setdefault(gram, []).append(i)
    close = []
    for p in load_seed_pool(data_dir=data_dir):
        g = grams(p.text)
        counts: dict = {}
        for gram in g:
            for i in postings.get(gram, ()):
                counts[i] = counts.get(i, 0) + 1
        if any(c / len(g | math500[i]) >= 0.7 for i, c in counts.items()):
            close.append(p)
    assert len(close) >= 20
    assert all(eval_index.query(p.text) is not None for p in close)


def test_fixture_near_copies_of_benchmark_problems_are_caught(eval_index):
    parsed = parse_completion((FIXTURES / "benchmark_nearcopy.txt").read_text(encoding="utf-8"))
    matches = [eval_index.query(p.text) for p in parsed.problems]
    keys = [m.key if m else None for m in matches]
    assert keys[:5] == ["math500:test/prealgebra/1247.json", "gsm8k_test:0", "amc23:0", "aime24:60",
                        "math500:test/prealgebra/1622.json"]
    assert keys[5:] == [None, None, None]  # fresh problems pass


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(DataFileMissing, match=r"math500_test\.jsonl.*CUMA_DATA_DIR"):
        build_eval_index(tmp_path)
    monkeypatch.delenv("CUMA_DATA_DIR", raising=False)
    with pytest.raises(DataFileMissing, match="CUMA_DATA_DIR"):
        build_eval_index(None)


def test_defaults_are_documented_values():
    assert EVAL_INDEX_DEFAULTS == {"n": 3, "word_n": 5, "threshold": 0.5, "overlap": 0.9, "min_overlap_shingles": 4}
