"""Scale-out on Ray through TorchRL: N rollout workers, one learner, sync or async (`rollout.workers > 1`).

    cuma train rollout.workers=2                          # a local Ray, started and stopped by the run
    cuma train rollout.workers=8 ray.address=auto         # join a running cluster (`ray start --head`)

The learner process keeps everything that decides what is trained: the curriculum (and its probes), the
group vote, the optimizer, evaluation and checkpoints. Each worker is a TorchRL `RayLLMCollector` whose policy
and CuMa TorchRL env are built on the worker by factories (`agents.distributed.workers`). The learner draws
each batch's problems from the curriculum and posts every worker its share of whole groups
(`agents.distributed.feed`: a Ray queue per worker); workers sample and return the rows; the learner votes
them in draw order through the same `GroupVote` replay-buffer write path as the single-process agent, so a
run's draws, rewards, masks and curriculum decisions are the single-process agent's given the same
completions. docs/distributed.md has the layout, the GPU commands and what was measured.
"""

from agents.distributed.ray_rollout import RayRollout, WorkerLost

__all__ = ["RayRollout", "WorkerLost"]
