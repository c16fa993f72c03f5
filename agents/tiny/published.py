"""The published weights of the default tiny base: the same base on every machine.

Why: the base's warm-up (600 steps at lr 1e-3) is chaotic. The last-bit differences between CPUs' float
kernels grow into other weights and another profile, and neither float64 training nor pinning
MKL/ATen/oneDNN to one instruction set makes two machine types agree. The RL runs on top of a fixed base
are not chaotic in that way: `cuma reproduce` under the native and the portable kernels gave the same
results for every arm but Intuitor, whose reward is a float computed from logits (the measurements:
docs/label-free-tiny-world.md, "The numbers above depend on the base build"). So shipping the default
base's weights (2 MB) makes every published number reproducible, where rebuilding it cannot.

`agents/tiny/published_base/<key>.safetensors` holds the weights of the base with cache key `<key>`;
`PUBLISHED` records where each was trained and its sha256 (checked on install). `install_published`
writes the same directory a local build writes (model, tokenizer, `cuma_base.json` with `"source":
"published"`), so nothing downstream tells the two apart. Other configs (another seed, other steps) have no
published weights and are trained on the machine, as is the default with `cuma base --train`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agents.tiny.config import CODE_VERSION, TinyBaseConfig

PUBLISHED_DIR = Path(__file__).resolve().parent / "published_base"

# cache key -> what the published weights are (the `cuma_base.json` of the build they come from)
PUBLISHED: dict[str, dict[str, Any]] = {
    "2306f046a7fa6e05": {
        "weights_sha256": "1ea498169bdf782c1186c90304821fac14670182e5729d7bbd56806565d09fdb",
        "trained_on": "AMD EPYC, 2 cores, one thread; torch 2.13.0+cpu, transformers 5.25.0, Python 3.11.7",
        "built_at": "2026-12-04T15:33:27",
        "train_seconds": 466.79,
        "final_loss": 0.18387672990560533,
        "loss_every_50": [4.7042, 1.6163, 0.8165, 0.6491, 0.6339, 0.4515, 0.3557, 0.3407, 0.2097, 0.2033, 0.1923,
                          0.1733],
    },
}


def published_weights(config: TinyBaseConfig) -> Path | None:
    """The published weights file for `config`, or None when it has none (then the base is trained)."""
    if config.key() not in PUBLISHED:
        return None
    path = PUBLISHED_DIR / f"{config.key()}.safetensors"
    return path if path.is_file() else None


def install_published(config: TinyBaseConfig, directory: Path) -> dict[str, Any]:
    """Write the published base of `config` into `directory` (model, tokenizer) and return its metadata.

    Raises `ValueError` when the shipped file does not hold exactly the recorded weights (a damaged or
    replaced file must never pass for the published base).
    """
    from safetensors.torch import load_file

    from agents.tiny.model import build_tiny_model, count_parameters, weights_hash
    from agents.tiny.tokenizer import save_char_tokenizer

    source = published_weights(config)
    if source is None:
        raise ValueError(f"no published weights for the tiny base config with key {config.key()}")
    record = PUBLISHED[config.key()]
    model, tokenizer = build_tiny_model(config)
    state = load_file(str(source))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"}  # tied to the input embeddings: save_pretrained leaves it out
    if unexpected or set(missing) - tied:
        raise ValueError(f"{source}: the weights do not fit the tiny base config "
                         f"(missing {sorted(set(missing) - tied)}, unexpected {sorted(unexpected)})")
    model.eval()
    digest = weights_hash(model)
    if digest != record["weights_sha256"]:
        raise ValueError(f"{source}: weights sha256 {digest[:16]} is not the published "
                         f"{record['weights_sha256'][:16]} (the file is damaged or was replaced; "
                         "reinstall the package)")
    model.save_pretrained(directory)
    save_char_tokenizer(tokenizer, directory)
    return {
        "key": config.key(),
        "config": config.to_dict(),
        "code_version": CODE_VERSION,
        "source": "published",
        "weights_sha256": digest,
        "parameters": count_parameters(model),
        "trained_on": record["trained_on"],
        "train_seconds": record["train_seconds"],
        "final_loss": record["final_loss"],
        "loss_every_50": list(record["loss_every_50"]),
        "built_at": record["built_at"],
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
