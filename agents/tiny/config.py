"""`TinyBaseConfig`: everything that determines the embedded tiny base model (architecture, tokenizer,
supervised warm-up, seed), validated, and hashed into the key of its cache entry.

The defaults give a *weak base* with the two traits that decide what label-free RL does to a weak LLM
(docs/label-free-tiny-world.md, "The default base"): reasoning that is latent (worked steps, right far more
often than a bare answer on levels 2-3, written in a minority of samples and rarely greedily), and no final
answer on many hard questions. The published weights `1ea49816` are this config at seed 0 (trained on the
re-keyed train split; the earlier `971d3e61`, on the earlier split, are in the git history); their profile,
and how each default was chosen (the shares of worked steps and of unanswered questions, the warm-up length,
lr and batch, all on the earlier base and split), are in docs/label-free-tiny-world.md, "How the default
config was chosen". Levels are learned
in sudden transitions whose timing moves with the seed and with the CPU's float kernels: evaluate a base
before relying on it (`cuma base`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from agents.tiny.tokenizer import DEFAULT_MERGES, tokenizer_spec, validate_merges
from cuma_env.problems import LEVELS

# Bump when the training code changes in a way that changes the weights for the same config
# (4: the arithmetic train split re-keyed on unordered operands, with a validation split held out).
CODE_VERSION = 4


@dataclass(frozen=True)
class TinyBaseConfig:
    """Architecture + tokenizer + warm-up recipe + seed of the tiny base.

    Architecture: a Qwen2 decoder (tied embeddings). Tokenizer: characters, each string of `merges`
    one token. Warm-up: the model reads `format_prompt(problem, template)` of the procedural train split
    and learns to emit its completion + `<eos>` (loss on those tokens only), levels drawn uniformly from
    `levels`. The completion (`agents.tiny.corpus`) is the bare `\\boxed{<answer>}`, or with probability
    `reasoning_share` worked steps before it, or with probability `unanswered_share[level - 1]` no answer
    (`reasoning_share=0` and no unanswered share give the bare-answer corpus of the earlier default).
    AdamW with linear warm-up to `lr` over `warmup_steps`, then `schedule` ("constant" or
    "cosine" down to `min_lr_ratio * lr`), gradient clipping at `grad_clip` (0 disables).
    """

    seed: int = 0
    # architecture
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 2
    num_heads: int = 4
    max_position_embeddings: int = 128
    # tokenizer
    merges: tuple[str, ...] = DEFAULT_MERGES
    # warm-up data
    template: str = "compact"
    levels: tuple[int, ...] = LEVELS
    reasoning_share: float = 0.45                 # answered completions that write worked steps first
    unanswered_share: tuple[float, ...] = (0.0, 0.0, 0.1, 0.4, 0.6)  # per level: completions with no answer
    # optimisation
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 50
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    num_threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(int(lv) for lv in self.levels))
        object.__setattr__(self, "merges", tuple(self.merges))
        if isinstance(self.unanswered_share, (list, tuple)):
            object.__setattr__(self, "unanswered_share", tuple(self.unanswered_share))
        problems = validate_merges(self.merges)
        for name in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "max_position_embeddings",
                     "steps", "batch_size", "num_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            problems.append(f"seed must be a non-negative int, got {self.seed!r}")
        if isinstance(self.hidden_size, int) and isinstance(self.num_heads, int) and self.num_heads > 0 \
                and self.hidden_size % self.num_heads:
            problems.append(f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            problems.append(f"warmup_steps must be a non-negative int, got {self.warmup_steps!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            problems.append(f"lr must be in (0, 1), got {self.lr!r}")
        if self.schedule not in ("constant", "cosine"):
            problems.append(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            problems.append("weight_decay and grad_clip must be >= 0")
        if not self.levels or any(lv not in LEVELS for lv in self.levels) or len(set(self.levels)) != len(self.levels):
            problems.append(f"levels must be distinct values of {LEVELS}, got {self.levels!r}")
        if not (isinstance(self.reasoning_share, (int, float)) and 0 <= self.reasoning_share <= 1):
            problems.append(f"reasoning_share must be in [0, 1], got {self.reasoning_share!r}")
        if not isinstance(self.unanswered_share, tuple) or len(self.unanswered_share) != len(LEVELS) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in self.unanswered_share):
            problems.append(f"unanswered_share must be {len(LEVELS)} shares in [0, 1] (one per level), "
                            f"got {self.unanswered_share!r}")
        if self.template != "compact":
            problems.append(f"template must be 'compact' (the prompt the tiny base reads), got {self.template!r}")
        if problems:
            raise ValueError("invalid TinyBaseConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["levels"] = list(self.levels)
        data["merges"] = list(self.merges)
        data["unanswered_share"] = list(self.unanswered_share)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyBaseConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TinyBaseConfig fields: {unknown}")
        return cls(**{k: (tuple(v) if k in ("levels", "merges", "unanswered_share") else v) for k, v in data.items()})

    def replace(self, **changes: Any) -> TinyBaseConfig:
        return replace(self, **changes)

    def key(self) -> str:
        """A stable hash of config + tokenizer + code version: the cache entry's name."""
        payload = {"config": self.to_dict(), "tokenizer": tokenizer_spec(self.merges),
                   "code_version": CODE_VERSION}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
