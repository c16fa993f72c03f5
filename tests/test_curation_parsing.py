"""Parsing and validating generator completions (curricula.curation.parsing / .validation).

The fixtures in tests/fixtures/curation/ are hand-written completions in the shapes large instruct models
produce for the curation prompt (clean tags, chatty markdown, fenced JSON with raw LaTeX, a reasoning block,
a completion cut by the token limit, leaked answers, duplicates, near copies of benchmark problems).
"""

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curricula.curation.parsing import clean_answer, clean_statement, format_problems, parse_completion
from curricula.curation.validation import (
    ValidationConfig,
    check_answer,
    check_latex,
    leaks_answer,
    repair_statement,
    validate_problem,
)

FIXTURES = Path(__file__).parent / "fixtures" / "curation"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def valid(item) -> list[str]:
    return validate_problem(repair_statement(item.text), check_answer(item.answer))


# ------------------------------------------------------------------------------------------------- parsing

def test_clean_tag_output_gives_all_25_problems_with_answers():
    result = parse_completion(fixture("clean_level2_algebra.txt"))
    assert result.format == "tags" and not result.dropped
    assert len(result.problems) == 25
    assert [p.index for p in result.problems] == list(range(1, 26))
    assert result.problems[0].text == "If $3x - 7 = 2x + 5$, what is the value of $x$?"
    assert result.problems[0].answer == "12"
    assert result.problems[5].answer == "8\\sqrt{2}"
    assert result.problems[17].answer == "\\frac{41}{4}"
    assert all(valid(p) == [] for p in result.problems)


def test_chatty_markdown_output_is_read_without_preamble_solutions_or_closing_chatter():
    result = parse_completion(fixture("messy_markdown.txt"))
    assert result.format == "markdown" and not result.dropped
    texts = [p.text for p in result.problems]
    answers = [p.answer for p in result.problems]
    assert len(texts) == 8
    assert answers == ["\\frac{5}{36}", "30", "74", "\\frac{1}{17}", "15", "480", "\\dfrac{34}{455}", "28"]
    assert texts[1] == "How many ways can the letters of the word $\\text{LEVEL}$ be arranged?"
    assert texts[3].startswith("Two cards are drawn") and "Solution" not in texts[3] and "boxed" not in texts[3]
    assert "Level 3" not in texts[3]
    assert not any("Sure" in t or "I hope" in t or "---" in t or "**" in t for t in texts)
    assert texts[-1].endswith("at least one odd number?")
    assert all(valid(p) == [] for p in result.problems)


def test_truncated_completion_drops_the_cut_problem_and_the_cut_answer():
    result = parse_completion(fixture("truncated.txt"), truncated=True)
    assert [reason for reason, _ in result.dropped] == ["truncated"]
    assert "Give your answer as" in result.dropped[0][1]
    assert len(result.problems) == 5
    # A missing </problem> is recovered when the <answer> shows where the statement ends.
    assert result.problems[2].text == "Find the greatest common divisor of $252$ and $198$."
    assert result.problems[2].answer == "18"
    # An <answer> left open before the next block is read up to the line end; empty means no answer.
    assert result.problems[4].answer is None
    assert all(valid(p) == [] for p in result.problems)


def test_an_open_answer_at_the_very_end_is_discarded():
    result = parse_completion("<problem>\nWhat is $12 \\cdot 11$?\n</problem>\n<answer>13", truncated=True)
    assert [(p.text, p.answer) for p in result.problems] == [("What is $12 \\cdot 11$?", None)]


def test_fenced_json_with_raw_latex_backslashes_is_repaired():
    result = parse_completion(fixture("json_fenced_truncated.txt"))
    assert result.format == "json"
    texts = [p.text for p in result.problems]
    assert len(texts) == 5
    assert texts[0] == "Find the value of $\\frac{1}{2} + \\frac{1}{3} + \\frac{1}{6}$."  # \f is not a form feed
    assert "\\theta" in texts[1] and "\\sin" in texts[1] and "\\circ" in texts[1]  # \t is not a tab
    assert "\\binom{10}{2} \\times" in texts[2]  # \b is not a backspace
    assert "x \\neq 0" in texts[3]  # \n before a LaTeX command is not a newline
    assert "balls.\nTwo are drawn" in texts[4]  # ... but \n before a word is
    assert [p.answer for p in result.problems] == ["1", "150", "135", "7", "\\frac{3}{10}"]
    assert [reason for reason, _ in result.dropped] == ["truncated"]  # the object cut mid-way
    assert all(valid(p) == [] for p in result.problems)


def test_reasoning_block_is_ignored_and_answers_lose_their_wrappers():
    result = parse_completion(fixture("reasoning_then_tags.txt"))
    assert [p.text for p in result.problems] == [
        "What is $\\frac{3}{4}$ of $24$?", "Round $3.846$ to the nearest tenth.", "What is $7 \\times 8 - 6$?"]
    assert [p.answer for p in result.problems] == ["18", "3.8", "50"]


def test_unclosed_reasoning_block_yields_nothing():
    result = parse_completion("<think>\nLet me write <problem> tags... Problem 1: What is")
    assert result.problems == []


def test_numbered_list_with_inline_answers_and_a_sub_list():
    text = ("Here you go:\n\n"
            "1. What is the units digit of $3^{20}$? Answer: 1\n"
            "2. Consider the steps:\n   1. double a number\n   2. add $6$\n"
            "If the result is $20$, what was the number? Answer: $7$\n"
            "3. How many primes are less than $30$? Answer: 10\n")
    result = parse_completion(text)
    assert result.format == "markdown"
    assert [p.answer for p in result.problems] == ["1", "7", "10"]
    assert "1. double a number" in result.problems[1].text
    assert result.problems[0].text == "What is the units digit of $3^{20}$?"


def test_markdown_last_block_without_answer_when_cut_is_dropped():
    text = ("**Problem 1.** What is $2^{10}$?\n**Answer:** 1024\n\n"
            "**Problem 2.** What is $3^{5}$?\n**Answer:** 243\n\n"
            "**Problem 3.** A rectangle has sides $3$ and")
    result = parse_completion(text, truncated=True)
    assert [p.answer for p in result.problems] == ["1024", "243"]
    assert result.dropped and result.dropped[0][0] == "truncated"


def test_refusals_and_empty_text_give_no_problems():
    for text in ("I'm sorry, but I can't help with that.", "", "   \n"):
        result = parse_completion(text)
        assert result.problems == [] and result.format == "none"


@pytest.mark.parametrize("raw, expected", [
    ("$\\frac{1}{2}$", "\\frac{1}{2}"), ("\\boxed{42}", "42"), ("$\\boxed{-3}$", "-3"), ("**7**", "7"),
    ("Answer: 12.", "12"), ("UNKNOWN", None), ("n/a", None), (None, None), (135, "135"), (2.5, "2.5"),
    (3.0, "3"), ("\\(x+1\\)", "x+1"), ("1:00 p.m.", "1:00 p.m."), ("x" * 200, None), ("line\nbreak", None),
])
def test_clean_answer(raw, expected):
    assert clean_answer(raw) == expected


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=400))
def test_parser_never_raises(text):
    result = parse_completion(text)
    assert all(p.text.strip() for p in result.problems)


# Statements the cleaner leaves alone (no leading "Problem:" label, "(Level 2)" tag, ...): those round-trip.
_SAFE = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters=" $+-=?.,()^"),
                min_size=1, max_size=80).map(lambda s: " ".join(s.split())).filter(
                    lambda s: s and clean_statement(s) == s)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_SAFE, st.one_of(st.none(), st.from_regex(r"[0-9]{1,4}", fullmatch=True))),
                min_size=1, max_size=6))
def test_strict_format_round_trips(items):
    result = parse_completion(format_problems(items))
    assert [(p.text, p.answer) for p in result.problems] == items


# ------------------------------------------------------------------------------------------------- validation

def test_leaked_answers_and_other_defects_are_rejected_with_reasons():
    result = parse_completion(fixture("leaked_answers.txt"))
    reasons = [valid(p) for p in result.problems]
    assert reasons == [
        ["answer_leak"],  # (Answer: 50)
        ["answer_leak"],  # The answer is $84$.
        ["answer_leak"],  # Solution: ... \boxed{72}
        ["answer_leak"],  # ? $x = 14$ after the question
        ["answer_leak"],  # Hint:
        ["proof_only"],
        ["diagram"],
        ["latex_braces"],
        ["latex_dollars"],
        ["too_short"],
        [],
        [],
    ]


@pytest.mark.parametrize("text, problem", [
    ("Find $\\frac{1}{2}$.", None),
    ("Find $\\frac{1}{2$.", "latex_braces"),
    ("Find $x} + 1$.", "latex_braces"),
    ("Find $x$ if $x + 1 = 3.", "latex_dollars"),
    ("Find $$x^2$$ and $y$.", None),
    ("Find \\(x\\) if \\[x = 2\\]", None),
    ("Find \\(x if y.", "latex_delimiters"),
    ("Compute $\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}$.", None),
    ("Compute $\\begin{pmatrix} 1 \\\\ 2 \\end{bmatrix}$.", "latex_environments"),
    ("Compute $\\left( \\frac{1}{2} \\right.$ and $\\left| x \\right|$.", None),
    ("Compute $\\left( \\frac{1}{2}$.", "latex_left_right"),
    ("It costs \\$5 and the set is $\\{1, 2\\}$.", None),
])
def test_check_latex(text, problem):
    assert check_latex(text) == problem


def test_money_written_with_bare_dollars_is_repaired_not_rejected():
    text = "Tina makes $18.00 an hour and saves $.50 per day. How much does she save in 10 days?"
    fixed = repair_statement(text)
    assert fixed == "Tina makes \\$18.00 an hour and saves \\$.50 per day. How much does she save in 10 days?"
    assert validate_problem(fixed) == []
    mixed = "If $x = 2$, what is $3x$?"
    assert repair_statement(mixed) == mixed


@pytest.mark.parametrize("text, answer, leak", [
    ("The equation $x^2 + kx + 9 = 0$ has exactly one solution. Find $k > 0$.", "6", False),
    ("How many ways are there? (Assume the answer is an integer.)", None, True),
    ("What is $a + b$? (Here $a = 3$ and $b = 4$.)", "7", False),
    ("What is $a + b$? It equals $7$.", "7", True),
    ("What is $x$? ($\\frac{14}{3}$)", "\\frac{14}{3}", True),
    ("Express your answer as a common fraction. What is $\\frac{1}{2} + \\frac{1}{3}$?", "\\frac{5}{6}", False),
])
def test_answer_leak_cases(text, answer, leak):
    assert leaks_answer(text, answer) is leak


def test_bounds_and_switches():
    cfg = ValidationConfig(max_chars=60)
    assert "too_long" in validate_problem("What is " + "1 + " * 30 + "1?", None, cfg)
    assert validate_problem("Show that $n^2 + n$ is even for every integer $n$.") == ["proof_only"]
    assert validate_problem("Show that $n^2 + n$ is even for every integer $n$.", None,
                            ValidationConfig(reject_proofs=False)) == []
    assert validate_problem("<problem> What is $1+1$?") == ["format_residue"]
    assert check_answer("\\frac{1}{2") is None and check_answer(" 7 ") == "7"


def test_real_benchmark_problems_mostly_pass_validation(data_dir):
    path = data_dir / "math" / "math500_test.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records = [r for r in records if "[asy]" not in r["problem"]]
    rejected = [r for r in records if validate_problem(repair_statement(r["problem"]), r["answer"])]
    assert len(rejected) <= 0.03 * len(records), [r["problem"][:80] for r in rejected]
