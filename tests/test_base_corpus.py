"""The tiny base's warm-up corpus: exact worked steps, the three kinds of completion in their shares, and the
default base that comes out of it (reasoning latent: right more often, taken rarely, never greedily)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agents.tiny.corpus import MAX_COMPLETION_TOKENS, UNANSWERED_TEXT, boxed, completion_for, worked_steps, writes_steps
from cuma_env.answers import extract_answer
from cuma_env.arithmetic import ArithmeticSource
from cuma_env.problems import LEVELS, Problem

STEP = re.compile(r"(-?\d+) ([+-]) (-?\d+) = (-?\d+)")


def _problems(per_level: int = 300):
    for split in ("train", "test"):
        source = ArithmeticSource(split=split, seed=3)
        for level in LEVELS:
            n = source.size(level)
            for index in np.random.default_rng(level).choice(n, size=min(per_level, n), replace=False):
                yield source.get(level, int(index))


def test_every_worked_step_is_exact_and_ends_at_the_answer():
    for problem in _problems():
        steps = worked_steps(problem)
        equations = STEP.findall(steps)
        assert equations and len(equations) == steps.count("="), steps
        for left, sign, right, result in equations:
            assert (int(left) + int(right) if sign == "+" else int(left) - int(right)) == int(result), steps
        assert equations[-1][3] == problem.answer
        assert extract_answer(steps + boxed(problem.answer)) == problem.answer


def test_the_longest_completions_fit_the_generation_budget():
    from agents.tiny.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    source = ArithmeticSource(split="train")
    # the widest operands of each level: 2-digit tens and units sums, negative differences, 3-digit sums
    widest = [source.get(lv, i) for lv in LEVELS for i in range(min(source.size(lv), 400))]
    longest = max(len(tok(worked_steps(p) + boxed(p.answer))["input_ids"]) + 1 for p in widest)  # + <eos>
    assert 30 <= longest <= MAX_COMPLETION_TOKENS


def test_completions_come_in_their_shares():
    source = ArithmeticSource(split="train")
    problem = source.get(3, 0)
    rng = np.random.default_rng(0)
    kinds = [completion_for(problem, rng, 0.45, (0, 0, 0.2, 0, 0)) for _ in range(4000)]
    unanswered = sum(k == UNANSWERED_TEXT for k in kinds) / len(kinds)
    with_steps = sum(writes_steps(k) for k in kinds) / len(kinds)
    assert abs(unanswered - 0.2) < 0.03 and abs(with_steps - 0.8 * 0.45) < 0.03
    assert all(k in (UNANSWERED_TEXT, boxed(problem.answer), worked_steps(problem) + boxed(problem.answer))
               for k in kinds)
    assert completion_for(problem, rng, 0.0, (0,) * 5) == boxed(problem.answer)  # the earlier default corpus
    assert extract_answer(UNANSWERED_TEXT) is None  # an unanswered completion never parses to a vote


def test_writes_steps_tells_the_routes_apart():
    assert writes_steps("4 + 7 = 11, 70 + 11 = 81. \\boxed{81}")
    assert not writes_steps("\\boxed{81}") and not writes_steps(UNANSWERED_TEXT) and not writes_steps("  ")


def test_worked_steps_refuse_a_problem_without_operands():
    with pytest.raises(ValueError, match="operands"):
        worked_steps(Problem(id="math/1", prompt="Solve x + 1 = 2.", level=3, source="math", answer="1"))


def test_reasoning_is_latent_in_the_default_base(tiny_base_dir):
    """What makes a label-free gain possible on the default base (docs/label-free-tiny-world.md): on level 3
    greedy decoding gives a bare answer, some samples write steps, and those are right more often, so the
    majority beats greedy there."""
    from agents.tiny.model import load_tiny_base
    from agents.tiny.profile import evaluate_base

    model, tokenizer = load_tiny_base(tiny_base_dir)
    stats = evaluate_base(model, tokenizer, n_per_level=60, levels=(3,), samples=8).level(3)
    assert stats.greedy_steps < 0.5 < stats.greedy
    assert 0.1 < stats.steps < 0.8
    assert stats.steps_pass1 > stats.bare_pass1 + 0.1
    assert stats.maj > stats.greedy
