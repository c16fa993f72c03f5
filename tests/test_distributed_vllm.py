"""vLLM rollout workers on Ray (agents.distributed.vllm_engines): TorchRL's `AsyncVLLM` replicas on their own
GPUs, weights broadcast by its `VLLMWeightSyncScheme`.

The real path needs vLLM and at least two GPUs (one engine, one learner: NCCL refuses two ranks of one
broadcast on the same GPU); it is skipped elsewhere, CI included. On the CPU this checks what decides
whether that path starts: the one-line refusals, the learner built without an engine of its own, and a
worker's generator over an engine (through the vLLM stand-in, tests/vllm_stand_in.py: TEST DOUBLE).
"""

from __future__ import annotations

import importlib.util

import pytest
import vllm_stand_in
from cli_helpers import assert_error, cuma

from agents import policy as policy_module
from agents.config import load_config
from agents.distributed import vllm_engines
from agents.policy import BackendUnavailable, build_policy

SMALL = ["rollout.prompts_per_step=4", "eval.n_per_level=4", "eval.samples=2", "eval.every=0",
         "output.progress=false", "output.tensorboard=false"]


def vllm_workers_config(model_dir, *overrides):
    return load_config(preset="tiny-cuma-gated", overrides=[f"model.path={model_dir}", *SMALL, "model.backend=vllm",
                                                             "rollout.workers=2", "ray.num_gpus_per_worker=1",
                                                             *overrides])


@pytest.fixture
def stand_in(monkeypatch):
    """The vLLM stand-in, with the GPU check lifted (the checks below that need no GPU run on the CPU)."""
    vllm = vllm_stand_in.install(monkeypatch)
    monkeypatch.setattr(policy_module, "check_vllm", lambda device: None)
    monkeypatch.setattr(vllm_engines, "check_vllm", lambda device: None)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    return vllm


def test_vllm_workers_on_a_machine_without_a_gpu_stop_with_one_line(capsys, tiny_base_dir, tmp_path):
    rc = cuma(capsys, "train", f"model.path={tiny_base_dir}", *SMALL, "model.backend=vllm", "rollout.workers=2",
              "ray.num_gpus_per_worker=1", "train.steps=1", "--out", tmp_path / "run")
    assert_error(rc, "train", "backend vllm needs a CUDA GPU")


def test_with_vllm_workers_the_learner_holds_no_engine(stand_in, tiny_base_dir):
    """The engines are the workers' (Ray actors on other GPUs): the learner trains and probes with transformers,
    and no in-process `vllm.LLM` takes its GPU memory; with one process, the engine is the learner's."""
    config = vllm_workers_config(tiny_base_dir)
    policy = build_policy(config.model, config.rollout, seed=0)
    assert policy.backend == "transformers" and policy.engine is None and policy.updater is None
    single = load_config(preset="tiny-cuma-gated", overrides=[f"model.path={tiny_base_dir}", *SMALL,
                                                              "model.backend=vllm"])
    assert build_policy(single.model, single.rollout, seed=0).backend == "vllm"
    # both engine paths (in-process `vllm.LLM`, Ray replicas) cap vLLM's context at the model's own positions
    assert policy_module.vllm_max_model_len(policy, config.model) == policy.model.config.max_position_embeddings
    assert policy.model.config.max_position_embeddings < config.model.vllm_max_model_len


@pytest.mark.parametrize(("overrides", "says"), [
    (["ray.num_gpus_per_worker=0.5"], "vLLM workers hold whole GPUs"),
    ([], "need 3 GPUs, this machine has 0"),
    (["ray.vllm_replicas=1"], "need 2 GPUs, this machine has 0"),
])
def test_a_vllm_layout_this_machine_cannot_hold_is_refused_before_ray_starts(stand_in, tiny_base_dir, overrides,
                                                                              says):
    config = vllm_workers_config(tiny_base_dir, *overrides)
    policy = build_policy(config.model, config.rollout, seed=0)
    with pytest.raises(BackendUnavailable, match=says) as caught:
        vllm_engines.check_engines(config, policy)
    assert "\n" not in str(caught.value)


def test_a_learner_on_an_engine_gpu_is_refused(stand_in, tiny_base_dir, monkeypatch):
    """A local Ray hands the engines GPUs 0..n-1; the learner must be after them (here: 4 GPUs, learner on 0)."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    config = vllm_workers_config(tiny_base_dir)
    policy = build_policy(config.model, config.rollout, seed=0)
    policy.device = torch.device("cuda:0")
    with pytest.raises(BackendUnavailable, match="set model.device=cuda:3"):
        vllm_engines.check_engines(config, policy)
    policy.device = torch.device("cuda:3")
    assert vllm_engines.check_engines(config, policy) == (2, 1)


def test_a_vllm_worker_samples_from_the_engine_it_is_given(stand_in, tiny_base_dir):
    """`make_policy` with an engine builds the single-process vLLM backend's generator over it (here the
    stand-in's `vllm.LLM`; on a GPU TorchRL's `AsyncVLLM`, which `vLLMWrapper` drives through the same calls)."""
    from tensordict import TensorDict

    from agents.distributed.workers import WorkerSpec, make_policy
    from agents.generator import TokenizedVLLMWrapper

    config = vllm_workers_config(tiny_base_dir)
    engine = stand_in.LLM(model=str(tiny_base_dir), dtype="float32", seed=0, max_model_len=128)
    spec = WorkerSpec(index=0, groups=2, model=config.model, rollout=config.rollout, env_id=config.env.id,
                      prompt_template=None, seed=0, posts=None, engine=engine)
    generator = make_policy(spec)
    assert isinstance(generator, TokenizedVLLMWrapper) and generator.model is engine
    from torchrl.modules.llm.policies.common import Text

    prompts = ["What is 1 + 2? Answer in \\boxed{}."] * 2
    out = generator(TensorDict(text=Text(prompt=prompts, batch_size=[2]), batch_size=[2]))
    assert len(out.get(("text", "response")).tolist()) == 2
    assert out.get(("tokens", "prompt"), as_padded_tensor=True).shape[0] == 2


needs_gpus = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or importlib.util.find_spec("ray") is None
    or not __import__("torch").cuda.is_available() or __import__("torch").cuda.device_count() < 2,
    reason="vLLM workers need vLLM, Ray and 2 GPUs (an engine and the learner)")


@needs_gpus
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vllm_workers_train_on_gpus_with_weight_broadcast(tiny_base_dir, tmp_path, mode, no_ray_left):
    """2 collectors sharing one `AsyncVLLM` replica on GPU 0, the learner on the last GPU, 3 steps."""
    import torch

    from agents.run_outputs import read_csv
    from agents.trainer import Trainer

    last = torch.cuda.device_count() - 1
    config = vllm_workers_config(tiny_base_dir, "ray.vllm_replicas=1", f"model.device=cuda:{last}",
                                 f"rollout.mode={mode}", "train.steps=3")
    Trainer.new(config, tmp_path / "run").run()
    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert len(rows) == 3
    assert [float(r["staleness"]) for r in rows] == ([0.0, 0.0, 0.0] if mode == "sync" else [0.0, 1.0, 1.0])
    assert (tmp_path / "run" / "model" / "config.json").is_file()
