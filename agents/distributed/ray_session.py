"""Ray for one run: join the cluster `ray.address` names, or start a local Ray and stop it at the end.

    with RaySession(config.ray, workers=2) as session:   # a local Ray with the CPUs (and GPUs) it needs
        ...

A Ray that this process had already initialised (a user's script, a test) is used as it is and left running.
A local Ray gets the worker environment the run needs (`OMP_NUM_THREADS`, `CUMA_DATA_DIR`, `CUMA_CACHE_DIR`)
and no dashboard. Workers' own output goes to Ray's session logs (`/tmp/ray/session_latest/logs`), not to
the console: a worker's error reaches the learner as an exception. `stop()` shuts it down, and with it every
process it started (`ray_processes` lists any left, for the tests).
"""

from __future__ import annotations

import math
import os
from typing import Any

from agents.config_sections import RayConfig
from agents.policy import BackendUnavailable

WORKER_ENV_VARS = ("OMP_NUM_THREADS", "CUMA_DATA_DIR", "CUMA_CACHE_DIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class RayUnavailable(BackendUnavailable):
    """Ray is not installed, or the cluster named by `ray.address` cannot be reached."""


class RaySession:
    def __init__(self, config: RayConfig, workers: int, gpus: float | None = None):
        self.config, self.workers = config, int(workers)
        # GPUs a local Ray is given: the workers' shares, or what the vLLM engines hold (agents.distributed)
        self.gpus = workers * config.num_gpus_per_worker if gpus is None else gpus
        self.owned = False  # whether stop() shuts Ray down (or disconnects from the cluster)

    def __enter__(self) -> RaySession:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        try:
            import ray
        except ImportError:
            raise RayUnavailable('rollout.workers > 1 runs on Ray: pip install "cuma-gym[ray]"') from None
        if ray.is_initialized():
            return
        env = {k: os.environ[k] for k in WORKER_ENV_VARS if k in os.environ}
        env.setdefault("OMP_NUM_THREADS", "1")
        runtime_env = {"env_vars": env}
        try:
            if self.config.address is not None:
                ray.init(address=self.config.address, runtime_env=runtime_env, log_to_driver=False)
            else:
                cpus = max(math.ceil(self.workers * self.config.num_cpus_per_worker), os.cpu_count() or 1)
                # GPUs: exactly the workers' share, so that Ray hands out the first visible ones and a learner
                # on the last one (model.device=cuda:N) never shares its GPU (docs/distributed.md)
                ray.init(num_cpus=cpus, num_gpus=math.ceil(self.gpus), include_dashboard=False, runtime_env=runtime_env,
                         log_to_driver=False, configure_logging=False)
        except ConnectionError as exc:
            raise RayUnavailable(f"ray.address={self.config.address}: {' '.join(str(exc).split())}") from None
        self.owned = True

    def stop(self) -> None:
        if self.owned:
            import ray

            ray.shutdown()
            self.owned = False


def ray_processes() -> list[str]:
    """Command lines of Ray's own processes still running on this machine (raylet, GCS, workers)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if any(tag in command for tag in ("raylet", "gcs_server", "ray::", "default_worker.py")):
            found.append(command)
    return found
