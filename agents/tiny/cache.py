"""The tiny base on disk: installed (or trained) on first use, cached per config, safe under concurrent callers.

    from agents.tiny.cache import ensure_tiny_base
    path = ensure_tiny_base()                     # installs the published weights (or trains), then instant
    model = AutoModelForCausalLM.from_pretrained(path); tokenizer = AutoTokenizer.from_pretrained(path)

Layout: `<cache>/tiny-base/cuma-tiny-base-<key>/` with the model and tokenizer (`save_pretrained`) and
`cuma_base.json` (config, key, weights hash, build time, loss curve summary, and `source`: "published" or
"trained"). `<cache>` is the argument, else `$CUMA_CACHE_DIR`, else `~/.cache/cuma`. `<key>` hashes the
config, the tokenizer and a code version.

A config with published weights (the default, `agents.tiny.published`) is installed from them, the same
base on every machine; any other config is trained here, as is the default with `train=True`. An entry
of the default left by an earlier version (trained here, no `source`) is replaced by the published one.

An entry is built in a temporary sibling directory and renamed into place when complete (`cuma_base.json`
is written last), under a file lock per entry: a second process waits for the first and reuses its result;
a crashed build leaves only a `.building-*` directory that the next build removes.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

from filelock import FileLock

from agents.tiny.config import CODE_VERSION, TinyBaseConfig
from cuma_env.atomic_io import build_directory

# the saved model's folder (and so its `name_or_path`) names no model family: docs/torchrl-gotchas.md, gotcha 10
MODEL_NAME_PREFIX = "cuma-tiny-base"

CACHE_ENV = "CUMA_CACHE_DIR"
METADATA_FILE = "cuma_base.json"
_TEMPLATE_FAMILY_WORDS = ("qwen", "llama", "falcon", "deepseek", "dialogpt")

__all__ = ["CACHE_ENV", "TinyBaseConfig", "default_cache_dir", "base_path", "is_built", "ensure_tiny_base",
           "read_metadata", "load_cached_base"]


def default_cache_dir() -> Path:
    """`$CUMA_CACHE_DIR` if set, else `~/.cache/cuma`."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cuma"


def base_path(config: TinyBaseConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Where the base of `config` lives (built or not)."""
    config = config or TinyBaseConfig()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / "tiny-base" / f"{MODEL_NAME_PREFIX}-{config.key()}"


def is_built(path: str | Path) -> bool:
    path = Path(path)
    return (path / METADATA_FILE).is_file() and (path / "config.json").is_file()


def read_metadata(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / METADATA_FILE).read_text())


def ensure_tiny_base(config: TinyBaseConfig | None = None, *, cache_dir: str | Path | None = None,
                     progress: bool = True, rebuild: bool = False, train: bool = False) -> Path:
    """The directory of the tiny base for `config` (default `TinyBaseConfig()`), building it if needed.

    `rebuild=True` builds again and replaces the entry (callers that already loaded it keep their copy);
    `train=True` trains on this machine even where published weights exist (with `rebuild`, or when the
    entry is missing).
    """
    config = config or TinyBaseConfig()
    if not isinstance(config, TinyBaseConfig):
        raise TypeError(f"config must be a TinyBaseConfig, got {type(config).__name__}")
    target = base_path(config, cache_dir)
    if _reusable(target, config) and not rebuild:
        return target
    _make_cache_dir(target.parent, cache_dir)
    if any(word in str(target).lower() for word in _TEMPLATE_FAMILY_WORDS):
        warnings.warn(f"the tiny base path {target} names a model family; TorchRL picks chat templates by "
                      "this name (set CUMA_CACHE_DIR to a path without it)", stacklevel=2)
    with FileLock(str(target) + ".lock"):
        if _reusable(target, config) and not rebuild:
            return target  # another process built it while we waited
        build_directory(target, lambda staging: _build_into(staging, config, progress, train))
    return target


def _reusable(target: Path, config: TinyBaseConfig) -> bool:
    """Built, and not a pre-publication local build of a config that now has published weights."""
    from agents.tiny.published import published_weights

    if not is_built(target):
        return False
    return "source" in read_metadata(target) or published_weights(config) is None


def _make_cache_dir(folder: Path, cache_dir: str | Path | None) -> None:
    """Create `folder` (under the cache root); an `OSError` naming the cache root and where it came from."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        root = folder.parent
        source = "" if cache_dir is not None else (
            f" (${CACHE_ENV})" if os.environ.get(CACHE_ENV) else f" (the default; set ${CACHE_ENV} for another)")
        raise type(exc)(f"cannot create the model cache directory {root}{source}: {exc.strerror or exc}") from exc


def load_cached_base(config: TinyBaseConfig | None = None, *, cache_dir: str | Path | None = None,
                     progress: bool = True):
    """(model, tokenizer) of the cached base, building it first if needed."""
    from agents.tiny.model import load_tiny_base

    return load_tiny_base(ensure_tiny_base(config, cache_dir=cache_dir, progress=progress))


def _build_into(directory: Path, config: TinyBaseConfig, progress: bool, train: bool = False) -> None:
    import torch
    import transformers

    from agents.tiny.model import count_parameters, weights_hash
    from agents.tiny.published import install_published, published_weights
    from agents.tiny.tokenizer import save_char_tokenizer
    from agents.tiny.training import train_tiny_base

    if not train and published_weights(config) is not None:
        metadata = install_published(config, directory)
        (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        return
    started = time.time()
    result = train_tiny_base(config, progress=progress)
    result.model.save_pretrained(directory)
    save_char_tokenizer(result.tokenizer, directory)
    losses = result.losses
    tail = losses[-min(50, len(losses)):]
    metadata = {
        "key": config.key(),
        "config": config.to_dict(),
        "code_version": CODE_VERSION,
        "source": "trained",
        "weights_sha256": weights_hash(result.model),
        "parameters": count_parameters(result.model),
        "train_seconds": round(result.seconds, 2),
        "final_loss": sum(tail) / len(tail) if tail else None,
        "loss_every_50": [round(v, 4) for v in losses[::50]],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }
    (directory / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
