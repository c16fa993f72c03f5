"""Grading edge cases that real LLM runs produce: completions cut off inside their final answer, and unicode
math (`12π`, `2√3`, `x²`, `−5`) that must grade, cluster and vote like its LaTeX form (docs/grading.md)."""

from __future__ import annotations

import time

import pytest

from agents.tiny.corpus import boxed, worked_steps
from agents.tiny.tokenizer import build_char_tokenizer
from cuma_env import majority_vote
from cuma_env.answers import canonical_key, cluster_answers, extract_answer, is_equivalent, normalize_answer, prewarm
from cuma_env.answers.extract import ends_inside_box
from cuma_env.answers.normalize import analyse
from cuma_env.answers.unicode_math import unicode_to_latex
from cuma_env.arithmetic import ArithmeticSource


@pytest.fixture(scope="module", autouse=True)
def sympy_worker():
    prewarm(wait=True)


# ------------------------------------------------------------------------------------------ truncation
@pytest.mark.parametrize("text", [
    "Adding the parts, so the answer is \\boxed{12",
    "We simplify and get \\boxed{\\frac{1}{",
    "The roots are \\boxed{\\{1, 2\\}",  # escaped braces never close a box
    "... therefore $\\boxed{3",
    "so the final answer is \\boxed{",
    "so the final answer is \\boxed",
    "so the final answer is \\fbox{7",
    "The answer is \\boxed{12} ... and so \\boxed{12",  # the same fragment as an earlier answer: still cut
])
def test_truncated_inside_boxed_has_no_answer(text):
    assert ends_inside_box(text)
    assert extract_answer(text) is None
    assert extract_answer(text, last_number_fallback=False) is None


def test_truncated_box_does_not_fall_back_to_last_number():
    text = "70 + 30 = 100, 4 + 7 = 11, 100 + 11 = 111. \\boxed{11"
    assert extract_answer(text, last_number_fallback=True) is None
    text = "The total is 1,250 dollars, so $x = 40$ and the answer is \\boxed{4"
    assert extract_answer(text, last_number_fallback=True) is None


def test_earlier_closed_box_then_unclosed_last_box_is_truncated():
    # The last box is the final answer: an earlier, closed one is working that the model went on to revise.
    assert extract_answer("First guess \\boxed{12}. Checking again, the answer is \\boxed{13") is None


def test_completion_that_ended_normally_still_falls_back_to_last_number():
    assert extract_answer("70 + 30 = 100, 4 + 7 = 11, 100 + 11 = 111.") == "111"
    assert extract_answer("We add them and get 42 apples.") == "42"
    assert extract_answer("I computed 3 + 4 = 7 and left \\boxed{} empty.") == "7"  # a closed, empty box


def test_unclosed_stray_box_before_a_closed_last_box_reads_the_last_box():
    # Malformed working, not a cut answer (the tiny base samples such text at temperature 1).
    assert not ends_inside_box("30 + \\boxed{1 = 81. \\boxed{81}")
    assert extract_answer("30 + \\boxed{1 = 81. \\boxed{81}") == "81"
    assert extract_answer("\\boxed{\\boxed{4}") == "4"


def test_bare_box_argument_is_complete():
    assert not ends_inside_box("The answer is \\boxed 5.")
    assert extract_answer("The answer is \\boxed 5.") == "5"
    assert extract_answer("\\boxed{7}  \n") == "7"


def test_truncated_completion_does_not_vote():
    completions = [
        "\\boxed{8}",
        "70 + 30 = 100, 4 + 7 = 11, 100 + 11 = 111. \\boxed{8",  # cut: must not become a second "8"
        "\\boxed{7}",
        "3 + 4 = 7. \\boxed{7}",
    ]
    answers = [extract_answer(c) for c in completions]
    assert answers[1] is None
    vote = majority_vote(answers, min_votes=2)
    assert (vote.label, vote.count, vote.masked) == ("7", 2, False)
    assert vote.rewards == (0.0, 0.0, 1.0, 1.0)
    assert vote.parse_rate == 0.75


def test_every_token_cut_of_a_tiny_base_completion():
    """Cut the tiny base's own warm-up completions (real corpus, real tokenizer) after every token: a cut inside
    the box has no answer, the whole completion has the right one, a cut before the box reads the working."""
    tokenizer = build_char_tokenizer()
    source = ArithmeticSource(split="train", seed=0)
    for level in range(1, 6):
        problem = source.get(level, 3)
        text = worked_steps(problem) + boxed(problem.answer)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        box_start = text.index("\\boxed{")
        cut_inside = 0
        for n in range(1, len(ids) + 1):
            prefix = tokenizer.decode(ids[:n])
            answer = extract_answer(prefix)
            if n == len(ids):
                assert answer == str(problem.answer)
            elif len(prefix) > box_start:
                assert answer is None, prefix
                cut_inside += 1
            else:
                assert answer is None or answer.lstrip("-").isdigit(), prefix
        assert cut_inside == len(str(problem.answer)) + 1  # after `\boxed{` and after each digit


def test_hostile_unclosed_boxes_stay_linear():
    for text in ("\\boxed{" * 200_000, "x " * 500_000 + "\\boxed{" + "{" * 100_000, "\\boxed" + " " * 1_000_000):
        start = time.monotonic()
        assert extract_answer(text) is None
        assert time.monotonic() - start < 3.0


# ---------------------------------------------------------------------------------------------- unicode
@pytest.mark.parametrize("raw, latex", [
    ("12π", "12\\pi"), ("2√3", "2\\sqrt{3}"), ("√(x+1)", "\\sqrt{x+1}"), ("x² + 1", "x^2 + 1"), ("−5", "-5"),
    ("3×4", "3\\times 4"), ("2·3", "2\\cdot 3"), ("6÷2", "6\\div 2"), ("x ≤ 3", "x \\leq 3"), ("∞", "\\infty"),
    ("10⁻³", "10^{-3}"), ("a₁", "a_1"), ("1½", "1\\frac{1}{2}"), ("∛8", "\\sqrt[3]{8}"),
])
def test_normalize_answer_writes_unicode_math_as_latex(raw, latex):
    assert normalize_answer(raw) == latex


def test_unicode_pi_equals_latex_pi():
    assert canonical_key("12π") == canonical_key("12\\pi")
    assert is_equivalent("π/4", "\\frac{\\pi}{4}")
    assert not is_equivalent("12π", "12")


@pytest.mark.parametrize("unicode, latex", [
    ("√3", "\\sqrt{3}"), ("2√3", "2\\sqrt{3}"), ("√(x+1)", "\\sqrt{x+1}"), ("√12", "\\sqrt{12}"),
    ("√(1+√2)", "\\sqrt{1+\\sqrt{2}}"), ("√π", "\\sqrt{\\pi}"),
])
def test_unicode_sqrt_equals_latex_sqrt(unicode, latex):
    assert canonical_key(unicode) == canonical_key(latex)


def test_unicode_sqrt_takes_every_digit_of_its_radicand():
    assert is_equivalent("√12", "2\\sqrt{3}")
    assert not is_equivalent("√12", "2\\sqrt{1}")


def test_unicode_superscripts_equal_carets():
    assert canonical_key("x² + 1") == canonical_key("x^2+1")
    assert canonical_key("10³") == canonical_key("1000")
    assert canonical_key("2.5×10⁻³") == canonical_key("0.0025")
    assert is_equivalent("x⁻¹", "\\frac{1}{x}")


def test_unicode_minus_equals_ascii_minus():
    assert canonical_key("−5") == canonical_key("-5") == canonical_key("–5")
    assert canonical_key("(−∞, 3]") == canonical_key("(-\\infty, 3]")
    assert extract_answer("so we are left with −5") == "−5"  # the fallback keeps a U+2212 sign
    assert canonical_key(extract_answer("so we are left with −5")) == "-5"


def test_unicode_times_is_a_product():
    assert is_equivalent("3×4", "12")
    assert is_equivalent("2·3", "6")
    assert is_equivalent("6÷2", "3")
    assert not is_equivalent("3×4", "34")


def test_unicode_relations_and_infinity_equal_latex():
    assert canonical_key("x ≤ 3") == canonical_key("x \\le 3")
    assert canonical_key("x ≥ 3") == canonical_key("x \\geqslant 3")
    assert canonical_key("x ≠ 3") == canonical_key("x \\neq 3")
    assert canonical_key("∞") == canonical_key("\\infty")


def test_unicode_spaces_read_like_a_plain_space():
    # `1 000` (digit groups split by a space) already reads as 1000; the unicode spaces read the same way.
    for space in ("\u00a0", "\u2009", "\u202f", " "):
        assert canonical_key(f"1{space}000") == canonical_key("1,000") == canonical_key("1000")
    assert canonical_key("12\u00a0π") == canonical_key("12\\pi")


def test_unicode_reaches_sympy_as_latex():
    canon = analyse("√(x+1)")
    assert canon.sympy_text is not None and canon.sympy_text.isascii()
    assert is_equivalent("√(x+1)", "(x+1)^{1/2}")  # decided by math-verify/sympy, which reads LaTeX


def test_ascii_text_takes_the_fast_path():
    text = "\\frac{1}{2} + x^2"
    assert unicode_to_latex(text) is text


def test_hostile_unicode_stays_cheap():
    for text in ("√" * 1000, "²" * 1000, "√(" * 300 + "x" + ")" * 300, "π" * 100_000):
        start = time.monotonic()
        canonical_key(text)
        is_equivalent(text, "2")
        assert time.monotonic() - start < 3.0


def test_group_vote_clusters_unicode_pi_with_latex_pi():
    completions = [
        "The area is $12\\pi$, so the answer is \\boxed{12\\pi}.",
        "Area = πr² = 12π. \\boxed{12π}",
        "Final Answer: 12π",
        "\\boxed{37.7}",
        "\\boxed{12}",
    ]
    answers = [extract_answer(c) for c in completions]
    assert cluster_answers(answers) == [0, 0, 0, 1, 2]
    vote = majority_vote(answers, min_votes=2)
    assert (vote.label, vote.count, vote.masked) == ("12\\pi", 3, False)
    assert vote.rewards == (1.0, 1.0, 1.0, 0.0, 0.0)
