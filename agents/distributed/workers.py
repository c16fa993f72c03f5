"""What runs on a Ray rollout worker: its CuMa TorchRL env and its policy, built there by factories.

    spec = WorkerSpec(index=0, groups=8, model=config.model, rollout=config.rollout, env_id=..., posts=queue)
    RayLLMCollector(env=functools.partial(make_env, spec), policy_factory=functools.partial(make_policy, spec), ...)

Nothing heavy is pickled: a transformers worker loads the model from `spec.model.path` (the learner sends a
resolved local directory, or a hub id) with the same `agents.policy.build_policy` as the single-process
agent, so it behaves as it does there; the learner then pushes its weights before the first batch. A vLLM
worker (`spec.engine`: handles to TorchRL's `AsyncVLLM` replicas, `agents.distributed.vllm_engines`) loads
nothing: it samples from the shared replicas, whose weights the learner broadcasts.

`one_step_ray_collector` builds TorchRL's `RayLLMCollector` with `OneStepCollector` as its remote class, the
single-process agent's collector (gotcha 17: no clone of each step's output, no member-by-member carry-over).
`RayLLMCollector.__init__` builds `LLMCollector.as_remote(...)` inline; this builds its remote actor
the same way from `OneStepCollector` and keeps every other method of `RayLLMCollector`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.config_sections import ModelConfig, RolloutConfig


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    groups: int                      # whole groups per batch on this worker
    model: ModelConfig
    rollout: RolloutConfig
    env_id: str
    prompt_template: str | None
    seed: int
    posts: Any                       # this worker's Ray queue of posted batches (`agents.distributed.feed`)
    engine: Any = None               # vLLM workers: the shared `AsyncVLLM` replicas; None: a transformers copy

    @property
    def rows(self) -> int:
        return self.groups * self.rollout.group_size


def make_policy(spec: WorkerSpec) -> Any:
    """The worker's generator (a TorchRL LLM wrapper), built as the single-process agent builds its own."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*auto_register_policy_transforms.*")  # gotcha 8, on the worker

    torch.set_num_threads(max(1, spec.model.num_threads))
    if spec.engine is not None:
        from agents.generator import vllm_generator

        return vllm_generator(spec.engine, _tokenizer(spec), spec.rollout)
    from agents.policy import build_policy

    return build_policy(spec.model, spec.rollout, seed=spec.seed + spec.index).generator


def _tokenizer(spec: WorkerSpec) -> Any:
    from agents.policy import load_tokenizer, model_source

    return load_tokenizer(model_source(spec.model.path))


def make_env(spec: WorkerSpec) -> Any:
    """The worker's CuMa TorchRL env: `groups` whole groups per batch, drawn from the learner's posts."""
    import cuma_env
    from agents.distributed.feed import PLACEHOLDER, FeedStream
    from cuma_env.problems import PoolSource

    tokenizer = _tokenizer(spec)
    stream = FeedStream(spec.posts, spec.index, spec.groups)
    return cuma_env.make_torchrl_env(
        spec.env_id, tokenizer=tokenizer, group_size=spec.rollout.group_size, batch_size=spec.rows,
        source=PoolSource("learner-feed", [PLACEHOLDER]), problem_stream=stream, scoring="buffer",
        prompt_template=spec.prompt_template, seed=spec.seed + spec.index)


def one_step_ray_collector(env: Any, *, remote_config: dict[str, Any], num_cpus: float, num_gpus: float,
                           **kwargs: Any) -> Any:
    """A `RayLLMCollector` whose remote collector is `OneStepCollector` (see the module docstring)."""
    from torchrl.collectors.llm import RayLLMCollector

    from cuma_env.torchrl.fast_paths import OneStepCollector

    collector = RayLLMCollector.__new__(RayLLMCollector)
    collector.sync_iter, collector.replay_buffer = True, None  # what RayLLMCollector.__init__ sets
    config = {**remote_config, "num_cpus": num_cpus, "num_gpus": num_gpus}
    collector._collector = OneStepCollector.as_remote(config).remote(env=env, **kwargs)
    return collector
