"""Mathematical equivalence and clustering: what merges, what must not, batching, caching, worker lifecycle."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from cuma_env.answers import _worker, cluster_answers, is_equivalent, prewarm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module", autouse=True)
def sympy_worker():
    """Start the worker before timing-sensitive assertions (its imports take about a second)."""
    assert prewarm(wait=True)


EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"), ("1/2", "\\dfrac12"), ("\\frac{1}{12}", "0.0833333333333333"),
    ("\\left( \\frac{1}{3} \\right)", "1/3"), ("10\\text{ cm}", "10"), ("30^\\circ", "30"),
    ("1,000", "1000"), ("1{,}000", "1\\!,\\!000"), ("\\sqrt{8}", "2\\sqrt{2}"), ("\\{1,2\\}", "\\{2,1\\}"),
    ("x = 5", "5"), ("\\frac{\\pi}{2}", "\\pi/2"), ("2\\pi", "\\pi + \\pi"),
    ("[1/2, \\infty)", "x \\in [0.5, \\infty)"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"), ("\\frac{\\sqrt{3}}{2}", "0.8660254037844386"),
    ("(x-2)(x+2)", "x^2-4"), ("\\tan^2(y)+1", "\\sec^2(y)"), ("1+2i", "i(2-i)"), ("x \\leq 5", "5 \\geq x"),
    ("2x+4y-3=0", "y=-\\frac{1}{2}x+\\frac{3}{4}"), ("\\pm 2021", "\\{-2021, 2021\\}"), ("28\\%", "28"),
    ("\\text{Evelyn}", "Evelyn"), ("0<x<1", "(0,1)"), ("f(x) = 2x + 3", "2x+3"), ("2.625", "2\\frac58"),
    ("\\sin(90^{\\circ}-x)", "\\cos(x)"), ("sqrt(2)", "\\sqrt{2}"), ("0.7853981633974483", "\\frac{\\pi}{4}"),
    ("12\\frac{3}{5}", "12.6"), ("\\ln 8", "3\\ln 2"),
    ("\\begin{pmatrix} 1 & 1/2 \\\\ 1/3 & 4 \\end{pmatrix}", "\\begin{pmatrix} 1 & 0.5 \\\\ 1/3 & 4 \\end{pmatrix}"),
]

DIFFERENT = [
    ("\\frac{1}{2}", "0.51"), ("1/2", "1/3"), ("0.33", "\\frac{1}{3}"), ("(1,2)", "(2,1)"), ("[0,1]", "[0,1)"),
    ("(1,2)", "\\{1,2\\}"), ("\\sqrt{8}", "3\\sqrt{2}"), ("x = 5", "x = 6"), ("2\\pi", "\\pi"), ("e", "\\pi"),
    ("1 - \\frac{1}{e}", "1 + \\frac{1}{e}"), ("\\pm 2021", "2021"), ("x > 5", "x < 5"), ("a + 3z = 0", "0"),
    ("12:00", "1:00"), ("4:30 p.m.", "4:30 a.m."), ("52_8", "52_9"), ("x", "X"), ("\\sqrt{x^2}", "x"),
    ("\\text{east}", "\\text{west}"), ("5x - 7y + 11z + 4 = 0", "x + y - z + 2 = 0"), ("10", "100"),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}"), ("1\\frac{1}{2}", "\\frac{1}{2}"), ("10^{10}", "10^{10}+1"),
    ("(2,12) \\cup (12,102)", "[-2,7]"), ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "(2, 1)"), ("32, 349", "32349"),
    ("", ""), ("5", ""),
]


@pytest.mark.parametrize("a, b", EQUIVALENT)
def test_equivalent_pairs(a, b):
    assert is_equivalent(a, b) and is_equivalent(b, a)


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_different_pairs_never_merge(a, b):
    assert not is_equivalent(a, b) and not is_equivalent(b, a)


def test_non_strings_are_not_equivalent():
    assert not is_equivalent(None, "1")  # type: ignore[arg-type]
    assert not is_equivalent(1, 1)  # type: ignore[arg-type]


def test_cluster_ids_follow_first_occurrence_and_skip_none():
    ids = cluster_answers(["7", None, "\\frac{1}{2}", "7.0", "0.5", "", "x", "1/2"])
    assert ids == [0, None, 1, 0, 1, None, 2, 1]
    assert cluster_answers([]) == []
    assert cluster_answers([None, None]) == [None, None]


def test_one_batched_worker_request_per_group(monkeypatch):
    calls = []
    real = _worker.compare_pairs

    def spy(items, pairs, deadline):
        calls.append((list(items), list(pairs)))
        return real(items, pairs, deadline)

    monkeypatch.setattr(_worker, "compare_pairs", spy)
    ids = cluster_answers(["(x+1)^2", "x^2+2x+1", "x^2 + 2x + 1", "(1+x)^2", "x^3", "5"], timeout=10)
    assert ids == [0, 0, 0, 0, 1, 2]
    assert len(calls) <= 1  # identical keys merge for free, the rest in one request
    calls.clear()
    cluster_answers(["(x+1)^2", "x^2+2x+1"], timeout=10)  # cached verdicts: no new request
    assert calls == []


def test_pure_python_path_needs_no_worker():
    start = time.monotonic()
    assert cluster_answers(["1/2", "0.5", "\\frac{2}{4}", "3", "\\sqrt{4}+1"], timeout=0) == [0, 0, 0, 1, 1]
    assert time.monotonic() - start < 1.0


def test_deadline_makes_undecided_pairs_distinct():
    start = time.monotonic()
    ids = cluster_answers(["\\int_0^1 e^{-x^{20}} \\sin(x^{30}) dx", "0.9", "1/2", "0.5"], timeout=0.5)
    assert time.monotonic() - start < 1.5
    assert ids[2] == ids[3] and ids[0] != ids[2]


def test_threads_get_correct_answers_concurrently():
    pairs = [("\\frac{1}{2}", "0.5", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("1/2", "1/3", False),
             ("(x-1)^2", "x^2-2x+1", True), ("x+1", "x+2", False)] * 4
    results = [None] * len(pairs)

    def work(k):
        a, b, _ = pairs[k]
        results[k] = is_equivalent(a, b, timeout=20)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [want for _, _, want in pairs]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to see zombie processes")
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_worker_dies_with_its_parent(how):
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {REPO!r})
        from cuma_env.answers import _worker, prewarm
        assert prewarm(wait=True)
        print(_worker.POOL.idle[0].proc.pid, flush=True)
        if {how!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{pid}/stat") as fh:  # a zombie waiting for its (gone) parent is dead too
            if fh.read().split()[2] == "Z":
                return
        time.sleep(0.1)
    pytest.fail(f"worker {pid} outlived its parent ({how})")
