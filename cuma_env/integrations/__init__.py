"""CuMa's group reward inside other trainers: `trl`, `verl` and `verifiers` adapters (docs/trainers.md).

Each adapter module imports its trainer and raises one ImportError naming the extra to install
(`pip install "cuma-gym[trl]"`, `[verl]`, `[verifiers]`) when it is missing; this package itself imports
no trainer. The shared, trainer-independent step is `score_blocks`: the G samples of a prompt sit next to
each other in every trainer's batch, so each block of G is voted on as one group.
"""

from cuma_env.integrations._groups import ScoredGroup, check_blocks, placeholder_problem, rewards_per_row, score_blocks

__all__ = ["ScoredGroup", "check_blocks", "placeholder_problem", "rewards_per_row", "score_blocks"]
