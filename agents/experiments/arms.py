"""The arms of `cuma reproduce`: each a shipped preset plus overrides, and what of the ground truth it reads.

One table for the runner (`agents.experiments.reproduce`) and its report (`agents.experiments.report`).
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.train_pool import SKEWED_POOL_SIZE as NOCURATED_POOL_SIZE


@dataclass(frozen=True)
class MethodSpec:
    name: str
    preset: str | None            # None: no training (the base evaluation)
    labels: str                   # what of the ground truth the training loop reads: "none" or "reward"
    description: str
    pool: str = "procedural"      # procedural (balanced train split) | skewed (MATH-like, few easy problems)
    overrides: tuple[str, ...] = ()


METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("base", None, "none", "the start model, evaluated (no training)"),
    MethodSpec("ttrl", "tiny-ttrl", "none",
               "TTRL: majority-vote reward, no mask, levels uniform, the unanswered vote as one (its code)"),
    MethodSpec("intuitor", "tiny-intuitor", "none", "Intuitor: self-certainty reward, levels uniform"),
    MethodSpec("oracle", "tiny-oracle", "reward", "GRPO with the ground-truth reward (labelled upper bound)"),
    MethodSpec("cuma", "tiny-cuma", "none",
               "paper-exact CuMa: mask if no answer occurs twice, sequential curriculum D1->D5, curated data"),
    MethodSpec("cuma_nomask", "tiny-cuma-nomask", "none", "CuMa without the mask"),
    MethodSpec("cuma_nocurriculum", "tiny-cuma-nocurriculum", "none", "CuMa without the curriculum (uniform)"),
    MethodSpec("cuma_nocurated", "tiny-cuma", "none",
               "CuMa without curated data: a MATH-skewed pool with few easy problems", pool="skewed",
               overrides=("env.pool.kind=skewed", f"env.pool.size={NOCURATED_POOL_SIZE}")),
    MethodSpec("cuma_gated", "tiny-cuma-gated", "none",
               "ours: agreement-gated curriculum, next-level probes, collapse guard, mask >= 75% of the group"),
    # controls (cuma_env.control_rewards): what the reward alone does, levels uniform, no mask, no probes
    MethodSpec("random_reward", "tiny-random-reward", "none",
               "spurious-reward control: a fair coin per completion, whatever it answers"),
    MethodSpec("format_only", "tiny-format-only", "none", "control: 1 for any parsed answer, right or wrong"),
    MethodSpec("empo", "tiny-empo", "none", "EMPO: the answer cluster's share of the group, levels uniform"),
)}
METHOD_ORDER: tuple[str, ...] = tuple(METHODS)
# what `cuma reproduce` trains when no method is named: the paper's arms and ours; the controls run when named
DEFAULT_METHODS: tuple[str, ...] = METHOD_ORDER[:METHOD_ORDER.index("random_reward")]

__all__ = ["DEFAULT_METHODS", "METHODS", "METHOD_ORDER", "MethodSpec", "NOCURATED_POOL_SIZE"]
