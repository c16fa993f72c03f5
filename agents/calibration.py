"""The model side of `cuma calibrate`: load the records and the model, sample N answers per problem through
`agents.generation`, and hand them to `curricula.calibration` (which never imports torch) to measure.

    records, template, procedural = load_records("arith", per_level=100)
    model, tokenizer, device, dtype = load_model("tiny", "auto", "auto")
    calibrated = calibrate_model(records, model, tokenizer, template=template, n_samples=8, seed=0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cuma_env.voting import DEFAULT_MIN_VOTES
from curricula.calibration import Bands, Generate

ARITH = "arith"  # --data for the procedural family
ARITH_PER_LEVEL = 100  # its problems per level when none is asked for (a file: all of them)
FILE_MAX_NEW_TOKENS = 1024


def load_records(data: str, per_level: int | None = None, *, arith_split: str = "train",
                 seed: int = 0) -> tuple[list[dict], str, bool]:
    """(records, prompt template, procedural): the first `per_level` problems per level of `arith` (the
    procedural family, template of its catalog task) or of a JSONL in the pools' layout (template default)."""
    from cuma_env.catalog import TASKS
    from cuma_env.datasets import read_jsonl
    from curricula.calibration import arith_records, select_per_level

    if data == ARITH:
        return (arith_records(per_level or ARITH_PER_LEVEL, split=arith_split, seed=seed),
                TASKS["CuMa-Arith-v0"].template, True)
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such file (give a JSONL in the pools' layout, or `arith`)")
    records = select_per_level(read_jsonl(path), per_level)
    if not records:
        raise ValueError(f"--data {path}: no records")
    return records, "default", False


def default_max_new_tokens(procedural: bool) -> int:
    """The tiny base's longest worked steps on the procedural family; room for a real model's otherwise."""
    from agents.tiny.corpus import MAX_COMPLETION_TOKENS

    return MAX_COMPLETION_TOKENS if procedural else FILE_MAX_NEW_TOKENS


def load_model(name: str, device_name: str = "auto", dtype_name: str = "auto"):
    """(model, tokenizer, device, dtype): the tiny base through its checked loader, anything else via HF;
    float32 on CPU (one thread: more contend on small models)."""
    from agents.policy import load_model as load_hf_model
    from agents.policy import model_source, resolve_device, resolve_dtype

    device = resolve_device(device_name)
    dtype = resolve_dtype(dtype_name, device)
    source = model_source(name)
    if (Path(source) / "cuma_base.json").is_file():
        from agents.tiny.model import load_tiny_base

        model, tokenizer = load_tiny_base(source)
        model.to(device)
    else:
        model, tokenizer = load_hf_model(source, device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device.type == "cpu":
        torch.set_num_threads(1)
    return model, tokenizer, device, dtype if device.type != "cpu" else torch.float32


def make_generate(model: Any, tokenizer: Any, *, dtype: torch.dtype = torch.float32, temperature: float = 0.6,
                  top_p: float = 1.0, max_new_tokens: int = FILE_MAX_NEW_TOKENS, batch_size: int = 512,
                  chat_template: bool = True) -> Generate:
    """`generate(prompts, n) -> [[str] * n]` for `curricula.calibration.calibrate`: sampled through
    `agents.generation` (the chat template first when asked and the tokenizer has one; no special tokens)."""
    from agents.generation import generate_texts

    def render(prompts: Sequence[str]) -> list[str]:
        if chat_template and getattr(tokenizer, "chat_template", None):
            from agents.policy import render_prompts

            return render_prompts(tokenizer, prompts)
        return list(prompts)

    def generate(prompts: Sequence[str], n: int) -> list[list[str]]:
        return generate_texts(model, tokenizer, render(prompts), samples=n, temperature=temperature, top_p=top_p,
                              max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype,
                              add_special_tokens=False)

    return generate


def calibrate_model(records: Sequence[Mapping[str, Any]], model: Any, tokenizer: Any, *, template: str,
                    n_samples: int = 8, temperature: float = 0.6, top_p: float = 1.0,
                    max_new_tokens: int = FILE_MAX_NEW_TOKENS, batch_size: int = 512, chat_template: bool = True,
                    bands: Bands = Bands(), min_votes: int | float = DEFAULT_MIN_VOTES, seed: int = 0,
                    dtype: torch.dtype = torch.float32, progress: bool = False) -> list[dict[str, Any]]:
    """Each record plus its measured level and agreement (`curricula.calibration.calibrate`), sampled on a
    forked RNG seeded with `seed` (the same model and seed give the same levels)."""
    from agents.generation import model_device, seeded
    from curricula.calibration import calibrate

    generate = make_generate(model, tokenizer, dtype=dtype, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, chat_template=chat_template)
    with seeded(seed, model_device(model)):
        return calibrate(records, generate, template=template, n_samples=n_samples, bands=bands,
                         min_votes=min_votes, chunk=max(1, batch_size // n_samples), progress=progress)
