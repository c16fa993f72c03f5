"""What the tiny base reads after each prompt in its warm-up: the env's `\\boxed{}` answer, for a share of
problems after worked steps, and for a per-level share of problems no answer at all.

Why these three kinds: they give the tiny model the two traits of a weak LLM that decide what label-free RL
does to it (docs/label-free-tiny-world.md, "The default base: a latent reasoning route"):
- a *latent reasoning route*. Worked steps (`70 + 30 = 100, 4 + 7 = 11, 100 + 11 = 111. \\boxed{111}`) are
  right far more often than a bare answer on the middle levels, but the base writes them in a minority of
  its samples and rarely greedily. A majority vote favours them where they agree, so a label-free reward can
  teach the model to reason, which no vote over the bare answers could (their mode is no better than greedy);
- *no final answer on hard questions* (`Let me think.`), as a weak LLM often ends without one. Whether such
  a completion votes is the voting convention that decides whether TTRL rewards silence (`env.empty_votes`).

The steps follow the procedural ladder (`cuma_env/arithmetic.py`): level 1 restates the sum; level 2 adds the
units first; level 3 adds tens and units separately; level 4 subtracts the tens, then the units; level 5 adds,
then subtracts. Every step is exact, and the last number before the box is the answer.
"""

from __future__ import annotations

import numpy as np

from cuma_env.problems import Problem

UNANSWERED_TEXT = "Let me think."
# The longest completion the corpus holds is 43 tokens of the tiny tokenizer (level-3 steps + box + <eos>);
# generation budgets for the tiny base (presets, `cuma base`) leave a little room above it.
MAX_COMPLETION_TOKENS = 48


def boxed(answer: str) -> str:
    """The final answer in the format `extract_answer` reads first."""
    return f"\\boxed{{{answer}}}"


def worked_steps(problem: Problem) -> str:
    """The steps before the boxed answer of a procedural problem, e.g. `4 + 7 = 11, 70 + 11 = 81. ` for
    `74 + 7`. Raises `ValueError` for a problem without the ladder's operands."""
    level, operands = problem.level, tuple(int(v) for v in problem.meta.get("operands", ()))
    arity = {1: 2, 2: 2, 3: 2, 4: 2, 5: 3}
    if level not in arity or len(operands) != arity[level]:
        raise ValueError(f"problem {problem.id!r}: worked steps need a procedural problem with its operands")
    if level == 1:
        a, b = operands
        return f"{a} + {b} = {a + b}. "
    if level == 2:
        a, b = operands
        tens, units = a // 10 * 10, a % 10
        return f"{units} + {b} = {units + b}, {tens} + {units + b} = {a + b}. "
    if level == 3:
        a, b = operands
        tens, units = a // 10 * 10 + b // 10 * 10, a % 10 + b % 10
        return f"{a // 10 * 10} + {b // 10 * 10} = {tens}, {a % 10} + {b % 10} = {units}, {tens} + {units} = {a + b}. "
    if level == 4:
        a, b = operands
        rest = a - b // 10 * 10
        return f"{a} - {b // 10 * 10} = {rest}, {rest} - {b % 10} = {a - b}. "
    a, b, c = operands
    return f"{a} + {b} = {a + b}, {a + b} - {c} = {a + b - c}. "


def completion_for(problem: Problem, rng: np.random.Generator, reasoning_share: float,
                   unanswered_share: tuple[float, ...]) -> str:
    """One warm-up completion (before <eos>): no answer with probability `unanswered_share[level - 1]`,
    else worked steps + the boxed answer with probability `reasoning_share`, else the bare boxed answer.

    Draws one number for the first choice and, when the problem is answered, one for the second, in that
    order (the corpus of a seed is fixed by it).
    """
    if rng.random() < unanswered_share[problem.level - 1]:
        return UNANSWERED_TEXT
    steps = worked_steps(problem) if rng.random() < reasoning_share else ""
    return steps + boxed(problem.answer)


def writes_steps(completion: str) -> bool:
    """Whether a completion of the tiny base takes the reasoning route (text before its final answer)."""
    text = completion.strip()
    return bool(text) and text != UNANSWERED_TEXT and not text.startswith("\\boxed{")
