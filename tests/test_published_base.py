"""The published weights of the default tiny base: installed instead of trained, verified, and never
mistaken for (or silently replacing) a base trained on purpose on this machine."""

from __future__ import annotations

import json
import shutil

import pytest

from agents.tiny.config import TinyBaseConfig

QUICK = dict(steps=4, batch_size=8, warmup_steps=2)


def _no_training(*args, **kwargs):
    raise AssertionError("the default base must be installed from its published weights, not trained")


@pytest.fixture
def quick_training(monkeypatch):
    """Training the default config runs a real warm-up of 4 steps instead of 600 (~105 s): what these tests
    check is which path ran and what it recorded."""
    import agents.tiny.training

    real = agents.tiny.training.train_tiny_base
    monkeypatch.setattr(agents.tiny.training, "train_tiny_base",
                        lambda config, progress=True, callback=None: real(config.replace(**QUICK), progress=False))


def test_the_default_base_is_installed_from_the_published_weights(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import agents.tiny.training
    from agents.tiny.cache import ensure_tiny_base, read_metadata
    from agents.tiny.model import weights_hash
    from agents.tiny.published import PUBLISHED, published_weights
    from agents.tiny.tokenizer import check_char_tokenizer

    config = TinyBaseConfig()
    assert published_weights(config) is not None
    assert published_weights(TinyBaseConfig(**QUICK)) is None and published_weights(config.replace(seed=1)) is None
    monkeypatch.setattr(agents.tiny.training, "train_tiny_base", _no_training)
    path = ensure_tiny_base(config, cache_dir=tmp_path, progress=False)
    meta = read_metadata(path)
    assert meta["source"] == "published" and meta["key"] == config.key() and meta["config"] == config.to_dict()
    assert meta["weights_sha256"] == PUBLISHED[config.key()]["weights_sha256"]
    model = AutoModelForCausalLM.from_pretrained(path)
    check_char_tokenizer(AutoTokenizer.from_pretrained(path))
    assert weights_hash(model) == meta["weights_sha256"]
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # still tied


def test_a_damaged_published_file_is_refused_and_leaves_no_entry(tmp_path, monkeypatch):
    import agents.tiny.published as published
    from agents.tiny.cache import base_path, ensure_tiny_base

    config = TinyBaseConfig()
    copy = tmp_path / "published"
    copy.mkdir()
    damaged = copy / f"{config.key()}.safetensors"
    shutil.copy(published.published_weights(config), damaged)
    blob = bytearray(damaged.read_bytes())
    blob[-5] ^= 0x01  # one bit of the last weight
    damaged.write_bytes(bytes(blob))
    monkeypatch.setattr(published, "PUBLISHED_DIR", copy)
    with pytest.raises(ValueError, match="is not the published"):
        ensure_tiny_base(config, cache_dir=tmp_path / "cache", progress=False)
    target = base_path(config, tmp_path / "cache")
    assert not target.exists() and not [p for p in target.parent.iterdir() if p.name.startswith(".building")]


def test_an_old_local_build_is_replaced_but_a_deliberate_one_is_kept(tmp_path, quick_training):
    from agents.tiny.cache import ensure_tiny_base, read_metadata
    from agents.tiny.published import PUBLISHED

    config = TinyBaseConfig()
    published_sha = PUBLISHED[config.key()]["weights_sha256"]
    path = ensure_tiny_base(config, cache_dir=tmp_path, progress=False, train=True)
    trained = read_metadata(path)
    assert trained["source"] == "trained" and trained["weights_sha256"] != published_sha
    assert ensure_tiny_base(config, cache_dir=tmp_path, progress=False) == path  # kept: trained on purpose
    assert read_metadata(path)["weights_sha256"] == trained["weights_sha256"]

    legacy = {k: v for k, v in trained.items() if k != "source"}  # what versions before publication wrote
    (path / "cuma_base.json").write_text(json.dumps(legacy))
    assert ensure_tiny_base(config, cache_dir=tmp_path, progress=False) == path
    assert read_metadata(path)["source"] == "published"
    assert read_metadata(path)["weights_sha256"] == published_sha


def test_cuma_base_says_whether_the_base_is_the_published_one(tmp_path, capsys, quick_training):
    from agents.cli import main

    args = ["base", "--n-per-level", "5", "--samples", "2", "--no-progress", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "published weights, trained on AMD EPYC" in printed
    assert "(the published base: docs/results/ numbers on the current split are for these weights)" in printed
    assert main(args + ["--train"]) == 0
    printed = capsys.readouterr().out
    assert "trained on this machine" in printed and "NOT the published base 1ea498169bdf782c" in printed
    assert main(args + ["--rebuild"]) == 0  # back to the published weights
    assert "(the published base:" in capsys.readouterr().out
