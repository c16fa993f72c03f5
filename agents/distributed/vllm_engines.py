"""vLLM engines for the Ray rollout (GPU only): TorchRL's `AsyncVLLM` replicas (one per worker unless
`ray.vllm_replicas` says fewer; the workers' requests share them), fed each
optimizer step's weights by TorchRL's `VLLMWeightSyncScheme` (an NCCL broadcast from the learner's GPU).

    layout = check_engines(config, policy)        # before Ray starts: (replicas, GPUs per replica)
    engines = VLLMEngines.start(config, policy, *layout)   # model.backend=vllm, rollout.workers > 1
    WorkerSpec(..., engine=engines.engine)       # each worker's generator samples from the shared replicas
    engines.push()                                 # after an optimizer step: new weights into every replica
    engines.shutdown()

This is the layout of TorchRL's `sota-implementations/grpo` (`grpo-async.py`): the engines are Ray actors that
hold `ray.num_gpus_per_worker` GPUs each (tensor parallel inside a replica), the collectors that drive them
are CPU actors, and the learner's Hugging Face model is the broadcast's rank 0. The learner runs in this
process on its own GPU: a local Ray is given only the engines' GPUs and hands out the first visible ones, so
the learner goes on the last (`model.device=cuda:N`, docs/distributed.md).

CI has no GPU and no vLLM wheel: this path runs where vLLM imports (`tests/test_distributed_vllm.py`,
`benchmarks/gpu_check.sh`); elsewhere `check_engines` refuses it with one line before Ray starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.config import Config
from agents.policy import VLLM_DTYPES, BackendUnavailable, Policy, check_vllm, vllm_max_model_len


def check_engines(config: Config, policy: Policy) -> tuple[int, int]:
    """(replicas, GPUs per replica); `BackendUnavailable` (one line) where vLLM workers cannot run here."""
    check_vllm(policy.device)
    gpus = config.ray.num_gpus_per_worker
    if gpus < 1 or gpus != math.floor(gpus):
        raise BackendUnavailable(f"vLLM workers hold whole GPUs: set ray.num_gpus_per_worker to 1 (or the tensor "
                                 f"parallel size of one engine), got {gpus:g}")
    replicas = config.ray.vllm_replicas or config.rollout.workers
    if config.ray.address is None:  # a local Ray hands the engines GPUs 0..n-1; the learner needs one after them
        import torch

        engines, have = replicas * int(gpus), torch.cuda.device_count()
        if engines + 1 > have:  # NCCL refuses two ranks of one broadcast on the same GPU
            raise BackendUnavailable(f"{replicas} vLLM replica(s) x {int(gpus)} GPU(s) and the learner need "
                                     f"{engines + 1} GPUs, this machine has {have}: lower ray.vllm_replicas (the "
                                     "workers share the replicas), or use rollout.workers=1 (vLLM in the learner)")
        if (policy.device.index or 0) < engines:
            raise BackendUnavailable(f"the learner is on {policy.device}, a GPU the vLLM engines take (a local Ray "
                                     f"gives them GPUs 0-{engines - 1}): set model.device=cuda:{have - 1}")
    return replicas, int(gpus)


def check_cluster_gpus(replicas: int, per_replica: int) -> None:
    """A joined cluster must have the engines' GPUs free, or Ray would wait for them forever."""
    import ray

    free = ray.available_resources().get("GPU", 0)
    if free < replicas * per_replica:
        raise BackendUnavailable(f"the Ray cluster has {free:g} free GPU(s); {replicas} vLLM replica(s) x "
                                 f"{per_replica} need {replicas * per_replica}")


@dataclass
class VLLMEngines:
    engine: Any      # torchrl.modules.llm.backends.vllm.AsyncVLLM: `num_replicas` Ray actors
    sender: Any      # torchrl.weight_update.llm.VLLMWeightSender, rank 0 of the broadcast group

    @classmethod
    def start(cls, config: Config, policy: Policy, replicas: int, per_replica: int) -> VLLMEngines:
        """Launch the replicas (the layout `check_engines` accepted) from the learner's model source and join
        the broadcast group; the rollout then pushes the learner's weights before the first batch (a resumed
        run's differ from the source's)."""
        from torchrl.modules.llm.backends.vllm import AsyncVLLM
        from torchrl.weight_update.llm import VLLMWeightSyncScheme, get_model_metadata

        check_cluster_gpus(replicas, per_replica)
        m = config.model
        engine = AsyncVLLM.from_pretrained(
            model_name=policy.source, num_devices=per_replica, num_replicas=replicas, verbose=False,
            compile=False, dtype=VLLM_DTYPES[policy.dtype], seed=config.seed, enable_prefix_caching=True,
            gpu_memory_utilization=m.vllm_gpu_memory_utilization, max_model_len=vllm_max_model_len(policy, m))
        try:
            # "state_dict": the Hugging Face names (`model.layers.0...`) that vLLM's `load_weights` expects
            scheme = VLLMWeightSyncScheme(master_address=_master_address(config, engine),
                                          master_port=engine.get_master_port(), gpus_per_replica=engine.get_tp_size(),
                                          num_replicas=engine.num_replicas, strategy="state_dict",
                                          device=policy.device.index or 0)
            sender = scheme.create_sender()
            sender.register_model(policy.model)
            sender.init_all_workers_group(get_model_metadata(policy.model), vllm_engine=engine)
        except BaseException:
            engine.shutdown()
            raise
        return cls(engine=engine, sender=sender)

    def push(self) -> None:
        """Broadcast the learner's current weights into every replica (TorchRL resets their prefix caches)."""
        self.sender.update_weights()

    def shutdown(self) -> None:
        for close in (self.sender.shutdown, self.engine.shutdown):
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort at exit; Ray's shutdown follows
                pass


def _master_address(config: Config, engine: Any) -> str:
    """Where the replicas reach the learner (rank 0, which hosts the broadcast's store): TorchRL's engine says
    `localhost`, right on one machine only; on a joined cluster, this node's address."""
    if config.ray.address is None:
        return engine.get_master_address()
    import ray

    return ray.util.get_node_ip_address()


__all__ = ["VLLMEngines", "check_engines", "check_cluster_gpus"]
