"""String normalisation and canonical keys: same value => same key, different value => different key."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cuma_env.answers import canonical_key, normalize_answer


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("$\\dfrac{1}{2}$", "\\frac{1}{2}"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "( 3, \\frac{\\pi}{2} )"),
        ("10\\text{ cm}", "10"),
        ("15\\mbox{ cm}^2", "15"),
        ("30^\\circ", "30"),
        ("\\$32,\\!348", "32348"),
        ("1{,}000", "1000"),
        ("28\\%", "28"),
        ("\\text{Evelyn}", "Evelyn"),
        ("\\text{(C)}", "C"),
        ("10 square units", "10"),
        ("\\boxed{7}.", "7"),
        ("x \\le 3", "x \\leq 3"),
        ("\\frac12 + \\sqrt3", "\\frac{1}{2} + \\sqrt{3}"),
        ("4:30 \\text{ p.m.}", "4:30 p.m"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    "forms",
    [
        ["\\frac{1}{2}", "0.5", "1/2", "\\dfrac12", "\\tfrac{1}{2}", ".5", "\\left(\\frac{1}{2}\\right)", "x = 0.5"],
        ["1000", "1,000", "1{,}000", "1\\!,\\!000", "1 000", "1000.0", "10^3", "\\$1000", "1000\\text{ dollars}",
         "1\u2009000", "1\u00a0000", "10\u00b3"],
        ["30", "30^\\circ", "30^{\\circ}", "30°", "30 \\text{ degrees}"],
        ["-\\frac{10}{9}", "\\frac{-10}{9}", "-10/9", "\u221210/9"],
        ["1\\frac{1}{2}", "1 1/2", "1.5", "\\frac{3}{2}", "1\u00bd"],
        ["(1,2)", "( 1 , 2 )", "\\left(1, 2\\right)", "(p,q) = (1,2)"],
        ["\\{1,2\\}", "\\{2,1\\}", "\\{2, 1\\}"],
        ["[0,1)", "\\left[0, 1\\right)", "x \\in [0,1)"],
        ["2.5\\times10^{-3}", "0.0025", "\\frac{1}{400}"],
        ["\\begin{pmatrix} 1 & 0.5 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{bmatrix}1&\\frac12\\\\0&1\\end{bmatrix}"],
        ["\\text{odd}", "odd", "\\textbf{Odd}"],
        ["\\frac{4}{3}", "1.\\overline{3}", "4/3"],
    ],
    ids=["half", "thousand", "degrees", "negative", "mixed", "tuple", "set", "interval", "sci", "matrix", "text",
         "repeating"],
)
def test_equal_values_share_a_key(forms):
    keys = {canonical_key(f) for f in forms}
    assert len(keys) == 1, keys


@pytest.mark.parametrize(
    "a, b",
    [
        ("0.5", "0.51"), ("1/2", "1/3"), ("(1,2)", "(2,1)"), ("[0,1)", "(0,1)"), ("1000", "100"),
        ("32, 349", "32349"), ("4:30 p.m.", "4:30 a.m."), ("x", "X"), ("2^6 3^5", "2^{63}"), ("10", "10\\%0"),
        ("\\{1,2\\}", "\\{1,2,3\\}"), ("1,2", "12"),
    ],
)
def test_different_values_have_different_keys(a, b):
    assert canonical_key(a) != canonical_key(b)


def test_canonical_key_rejects_non_strings():
    with pytest.raises(TypeError):
        canonical_key(None)  # type: ignore[arg-type]


def test_long_answers_get_an_exact_text_key_fast():
    big = "1+" * 500_000 + "1"
    start = time.monotonic()
    key = canonical_key(big)
    assert time.monotonic() - start < 3.0
    assert key.startswith("long:") and key == canonical_key(" " + big)
    assert key != canonical_key(big + "1")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789.,/-+ ()[]{}\\$%^_=xyzabc\\frac\\sqrt\\text"
                                             "√∛π²⁻₁×·−∞≤½\u2009")), max_size=40))
def test_keys_are_deterministic_and_never_raise(text):
    assert canonical_key(text) == canonical_key(text)
    assert isinstance(normalize_answer(text), str)


@settings(max_examples=200, deadline=None)
@given(st.fractions(min_value=-10**6, max_value=10**6, max_denominator=10**4))
def test_fraction_spellings_share_a_key(value):
    p, q = value.numerator, value.denominator
    assert canonical_key(f"{p}/{q}") == canonical_key(f"\\frac{{{p}}}{{{q}}}") == canonical_key(f"{p} / {q}")
    if q == 1:
        assert canonical_key(str(p)) == canonical_key(f"{p}.0")
