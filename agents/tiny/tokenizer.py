"""A local character-level fast tokenizer for the embedded tiny base model (nothing is downloaded).

Every printable ASCII character (space to `~`) and the newline is one token; anything else maps to `<unk>`.
On top of the characters, a few fixed strings (`merges`) are single tokens, matched longest first:
`\\boxed{` and, by default, the fixed words of the compact template and the spaced operators
(`COMPACT_PHRASES`: "What is ", "? Answer in \\boxed{}.", " + ", " - "). Digits always stay single
characters. The merges shorten prompts and completions several-fold, so warm-up steps and rollouts cost
less CPU at the same learning per step (docs/performance.md). `merges=()` gives the plain character
tokenizer; decoded text is identical either way.

Special tokens: `<pad>` (id 0), `<eos>` (id 1), `<unk>` (id 2). There is no BOS and nothing is added when
encoding, so `tokenizer(prompt)` gives exactly the ids of the prompt text: the same contract in training,
in the evaluation here and in any RL stack. Padding side defaults to left (generation).

Saving: use `save_char_tokenizer(tokenizer, directory)`. Next to a Qwen2 `config.json`, transformers 5's
`AutoTokenizer` would otherwise load `Qwen2Tokenizer`, which rebuilds Qwen's byte-level BPE pipeline from the
vocabulary and silently drops spaces and merges (`qwen2` is in its MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS).
The saved `tokenizer_config.json` therefore carries an `auto_map` entry: without `trust_remote_code`
transformers then falls back to the declared fast tokenizer class, and with `trust_remote_code=True` it
loads `cuma_char_tokenizer.py` (written alongside; an empty subclass of the fast tokenizer). Either way the
pipeline is exactly tokenizer.json's. `check_char_tokenizer` verifies a loaded tokenizer.

The bundled chat template renders every message's content verbatim, one after the other, and ends an
assistant turn with `<eos>`; the generation prompt is empty. So a one-message chat `[user: prompt]` gives
exactly the text the base was trained on, and the assistant part is wrapped in `{% generation %}` so that
`return_assistant_tokens_mask` works (TorchRL uses a tokenizer's own template when it has these tags and
its `name_or_path` names no known model family).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
BOXED_TOKEN = "\\boxed{"
# The fixed words of the compact template and the spaced operators: one token each (see module docstring).
COMPACT_PHRASES: tuple[str, ...] = ("What is ", "? Answer in \\boxed{}.", " + ", " - ")
DEFAULT_MERGES: tuple[str, ...] = (BOXED_TOKEN, *COMPACT_PHRASES)
CHARSET: tuple[str, ...] = tuple(chr(c) for c in range(32, 127)) + ("\n",)

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{%- else -%}{{ message['content'] }}{%- endif -%}"
    "{%- endfor -%}"
)


def validate_merges(merges: tuple[str, ...]) -> list[str]:
    """Problems with a merge list (empty when it is fine)."""
    problems = []
    for m in merges:
        if not isinstance(m, str) or len(m) < 2:
            problems.append(f"a merge must be a string of >= 2 characters, got {m!r}")
        elif any(ch not in CHARSET for ch in m):
            problems.append(f"merge {m!r} holds characters outside the charset")
    if len(set(merges)) != len(merges):
        problems.append("merges must be distinct")
    return problems


def vocabulary(merges: tuple[str, ...] = DEFAULT_MERGES) -> list[str]:
    """Tokens in id order: specials, then the merged strings, then the characters."""
    return [*SPECIAL_TOKENS, *merges, *CHARSET]


def tokenizer_spec(merges: tuple[str, ...] = DEFAULT_MERGES) -> dict[str, Any]:
    """Everything that defines the tokenizer, for cache keys."""
    return {"kind": "char+merges", "vocab": vocabulary(merges), "chat_template": CHAT_TEMPLATE}


def build_char_tokenizer(merges: tuple[str, ...] = DEFAULT_MERGES, model_max_length: int = 128,
                         padding_side: str = "left") -> PreTrainedTokenizerFast:
    """The character-level tokenizer as a transformers fast tokenizer (save_pretrained/from_pretrained work).

    Each string of `merges` is one token wherever it occurs (longest match first); everything else is
    one token per character.
    """
    merges = tuple(merges)
    problems = validate_merges(merges)
    if problems:
        raise ValueError("; ".join(problems))
    vocab = {token: i for i, token in enumerate(vocabulary(merges))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    alternatives = [re.escape(m) for m in sorted(merges, key=len, reverse=True)] + [r"[\s\S]"]
    pattern = "|".join(alternatives)
    core.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        clean_up_tokenization_spaces=False,
        padding_side=padding_side,
        model_max_length=model_max_length,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


SHIM_MODULE = "cuma_char_tokenizer"
_SHIM_SOURCE = '''"""Loader shim for `AutoTokenizer.from_pretrained(path, trust_remote_code=True)`: the CuMa tiny base's
tokenizer is a plain fast tokenizer defined entirely by tokenizer.json; this class adds nothing."""

from transformers import PreTrainedTokenizerFast


class CumaCharTokenizer(PreTrainedTokenizerFast):
    pass
'''
PROBE_TEXT = "What is 74 + 37 - 12? Answer in \\boxed{}.\\boxed{-3} x"


def save_char_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: str | Path) -> None:
    """`save_pretrained` plus what makes `AutoTokenizer.from_pretrained(directory)` load it unchanged."""
    directory = Path(directory)
    tokenizer.save_pretrained(directory)
    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["auto_map"] = {"AutoTokenizer": [None, f"{SHIM_MODULE}.CumaCharTokenizer"]}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (directory / f"{SHIM_MODULE}.py").write_text(_SHIM_SOURCE)


def check_char_tokenizer(tokenizer, merges: tuple[str, ...] = DEFAULT_MERGES) -> None:
    """Raise if `tokenizer` does not tokenize like `build_char_tokenizer(merges)` (e.g. a loader swapped it)."""
    reference = build_char_tokenizer(merges)
    got = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    want = reference(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    if got != want or len(tokenizer) != len(reference) or tokenizer.eos_token_id != reference.eos_token_id:
        raise RuntimeError(
            f"tokenizer {type(tokenizer).__name__} does not match the CuMa character tokenizer "
            f"(probe ids {got[:12]}... vs {want[:12]}...); load the base with agents.tiny.model.load_tiny_base "
            "or AutoTokenizer on a directory written by save_char_tokenizer")
