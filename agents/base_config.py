"""`TinyBaseConfig`: everything that determines the embedded tiny base model (architecture, tokenizer,
supervised warm-up, seed), validated, and hashed into the key of its cache entry.

The defaults give a *weak base* like the one the prototype measured (docs/label-free-tiny-world.md, "Before
the package"): good on level 1 of the procedural arithmetic ladder, poor on level 5, with majority votes that
carry information on the easy levels only.

How the defaults were chosen (one thread; greedy accuracy L1..L5 on 200 held-out problems per level):
- Levels are learned in sudden transitions (L1 by ~500 steps of 64, then L2, then L3 together with some
  L4), whose timing varies with the seed by several hundred steps.
- lr 2e-3 (the prototype's) plateaued for >1,900 steps with L2 ~0.1 on seed 1 and spiked; 4e-3 was worse;
  1e-3 broke through on every seed tried. Batch 64 learned more per sample than 128.
- A cosine decay ends the run in a settled state. 700 steps (the default): seed 0 0.89/0.57/0.29/0.07/0.11,
  seed 1 1.00/0.49/0.12/0.11/0.07, seed 2 1.00/0.85/0.13/0.09/0.07. 750 steps: seed 0
  0.89/0.61/0.49/0.09/0.08. 800 steps: seed 0 0.94/0.79/0.73/0.14/0.10 (past its L3 transition), seed 2
  1.00/0.92/0.14/0.10/0.12. 1000 steps: seed 0 0.89/0.89/0.70/0.18/0.14 (too strong). 700 keeps a margin
  before seed 0's L3 transition and has maj@8 > sampled pass@1 on L1-L3 (level 1 has only 18 held-out
  problems, so its row is coarse).
- ~55 s of one core for 700 steps with the phrase-merging tokenizer (~2.5x slower without it).
Another seed, or other CPU kernels, can move a level's transition: evaluate a base before relying on it
(`cuma base`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from agents.tokenizer import DEFAULT_MERGES, tokenizer_spec, validate_merges
from cuma_env.problems import LEVELS

# Bump when the training code changes in a way that changes the weights for the same config.
CODE_VERSION = 2


@dataclass(frozen=True)
class TinyBaseConfig:
    """Architecture + tokenizer + warm-up recipe + seed of the tiny base.

    Architecture: a Qwen2 decoder (tied embeddings). Tokenizer: characters, each string of `merges`
    one token. Warm-up: the model reads `format_prompt(problem, template)` of the procedural train split
    and learns to emit `\\boxed{<answer>}<eos>` (loss on those tokens only), levels drawn uniformly from
    `levels`; AdamW with linear warm-up to `lr` over `warmup_steps`, then `schedule` ("constant" or
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
    # optimisation
    steps: int = 700
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
        if self.template != "compact":
            problems.append(f"template must be 'compact' (the prompt the tiny base reads), got {self.template!r}")
        if problems:
            raise ValueError("invalid TinyBaseConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["levels"] = list(self.levels)
        data["merges"] = list(self.merges)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TinyBaseConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TinyBaseConfig fields: {unknown}")
        return cls(**{k: (tuple(v) if k in ("levels", "merges") else v) for k, v in data.items()})

    def replace(self, **changes: Any) -> "TinyBaseConfig":
        return replace(self, **changes)

    def key(self) -> str:
        """A stable hash of config + tokenizer + code version: the cache entry's name."""
        payload = {"config": self.to_dict(), "tokenizer": tokenizer_spec(self.merges),
                   "code_version": CODE_VERSION}
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
