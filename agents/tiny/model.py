"""The tiny Qwen2-architecture model: config, random initialisation, loading, a weights fingerprint.

The model is a `Qwen2ForCausalLM` built from a `Qwen2Config` (no download). Its saved `name_or_path` is the
cache directory `.../cuma-tiny-base-<key>`: it must never contain "qwen" (or "llama", "falcon", ...),
because TorchRL picks a chat template by that name (docs/torchrl-gotchas.md, gotcha 10).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from agents.tiny.config import TinyBaseConfig
from agents.tiny.corpus import MAX_COMPLETION_TOKENS
from agents.tiny.tokenizer import build_char_tokenizer, check_char_tokenizer


def tiny_qwen2_config(config: TinyBaseConfig, tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_cache=True,
    )


def build_tiny_model(config: TinyBaseConfig | None = None, tokenizer: PreTrainedTokenizerBase | None = None,
                     *, seed: int | None = None) -> tuple[Qwen2ForCausalLM, PreTrainedTokenizerBase]:
    """A randomly initialised tiny model and its tokenizer (initialisation seeded by `seed` or config.seed)."""
    config = config or TinyBaseConfig()
    tokenizer = tokenizer or build_char_tokenizer(config.merges, model_max_length=config.max_position_embeddings)
    torch.manual_seed(config.seed if seed is None else seed)
    model = Qwen2ForCausalLM(tiny_qwen2_config(config, tokenizer))
    configure_generation(model, tokenizer)
    return model, tokenizer


def configure_generation(model: Qwen2ForCausalLM, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generation defaults the base was built for: stop at <eos>, pad with <pad>, no top-k/top-p cut."""
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = None
    gen.do_sample = False
    gen.temperature = 1.0
    gen.top_k = None
    gen.top_p = None
    gen.max_new_tokens = MAX_COMPLETION_TOKENS


def load_tiny_base(path: str | Path, *, num_threads: int | None = None):
    """(model, tokenizer) from a saved base directory via the Auto classes, model in eval mode; the
    tokenizer is checked against the one the base was trained with."""
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model = AutoModelForCausalLM.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    merges = _saved_merges(Path(path))
    if merges is not None:
        check_char_tokenizer(tokenizer, merges)
    model.eval()
    return model, tokenizer


def _saved_merges(path: Path) -> tuple[str, ...] | None:
    meta = path / "cuma_base.json"
    if not meta.is_file():
        return None
    return tuple(json.loads(meta.read_text())["config"]["merges"])


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 over the state dict (names, shapes, dtypes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
