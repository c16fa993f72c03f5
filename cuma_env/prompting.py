"""Prompt templates: how a `Problem` becomes the text a model sees.

Both templates instruct a `\\boxed{}` answer, the format `extract_answer` reads first. The compact one is
the default of the procedural family so a tiny character-level model sees short prompts.
"""

from __future__ import annotations

from cuma_env.problems import Problem

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULT_TEMPLATE = "{problem}\n" + BOXED_INSTRUCTION
COMPACT_TEMPLATE = "{problem} Answer in \\boxed{}."

TEMPLATES = {"default": DEFAULT_TEMPLATE, "compact": COMPACT_TEMPLATE}


def resolve_template(template: str) -> str:
    """A template name (`default`, `compact`) or a format string with a `{problem}` field."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{problem}" not in template:
        raise ValueError(f"prompt template must be one of {sorted(TEMPLATES)} or contain '{{problem}}', "
                         f"got {template!r}")
    return template


def format_prompt(problem: Problem, template: str = "default") -> str:
    """Substitutes `{problem}` literally, so templates may hold LaTeX braces such as `\\boxed{}`."""
    return resolve_template(template).replace("{problem}", problem.prompt)
