"""CuMa's group vote as verl reward managers, registered as `cuma` (docs/trainers.md, section verl).

Two managers, because verl changed where a reward sees the batch:
- `CuMaRewardManager` (verl's batch interface, `verl.workers.reward_manager`): `__call__(data, return_dict)`
  sees the whole batch, groups rows by `uid` and votes. verl's PPO trainer calls this interface up to 0.7.0;
  later versions still ship and register it (recipes and custom loops call it).
- `CuMaRewardLoopManager` (verl's reward loop, `verl.experimental.reward_loop`, trainer default from 0.7.1):
  `run_single` sees one sample, so the samples of a uid meet in a `GroupRendezvous` first; it needs
  `reward.num_workers=1` so that every sample of a prompt reaches the same worker.

Both vote with `verl_groups` (trainer-independent); this module only adapts verl's signatures and raises one
ImportError naming the `[verl]` extra when verl is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

try:
    from verl.workers.reward_manager import register as _register_batch_manager
    from verl.workers.reward_manager.abstract import AbstractRewardManager
except ImportError as exc:  # pragma: no cover - exercised by the verl venv check, not the test suite
    raise ImportError("cuma_env.integrations.verl needs verl: pip install 'cuma-gym[verl]' "
                      f"(importing verl failed: {exc})") from exc
try:
    from verl.experimental.reward_loop.reward_manager import register as _register_loop_manager
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
except ImportError:  # pragma: no cover - verl before the reward loop (< 0.7)
    _register_loop_manager = RewardManagerBase = None

from cuma_env.integrations.verl_groups import (
    episode_config,
    expected_group_size,
    read_sample,
    score_members,
    score_verl_batch,
)
from cuma_env.integrations.verl_rendezvous import GroupRendezvous
from cuma_env.problems import Problem, ProblemStream

NAME = "cuma"
DEFAULT_GROUP_TIMEOUT_S = 600.0


@_register_batch_manager(NAME)
class CuMaRewardManager(AbstractRewardManager):
    """Majority vote per uid over a whole batch; `reward_kwargs` are the vote's settings (`min_votes`, ...).

    verl's `compute_score` is ignored: the reward is the vote, not a per-sample score. `problem_stream` (set
    when constructing the manager yourself) hears every group's info, as a curriculum does in the gym face.
    """

    def __init__(self, tokenizer: Any, num_examine: int = 0, compute_score: Any = None,
                 reward_fn_key: str = "data_source", problem_stream: ProblemStream | None = None,
                 **reward_kwargs: Any):
        self.tokenizer = tokenizer
        self.num_examine = int(num_examine)
        self.reward_fn_key = reward_fn_key
        self.config = episode_config(reward_kwargs)
        self.problem_stream = problem_stream

    def __call__(self, data: Any, return_dict: bool = False) -> Any:
        out = score_verl_batch(data, self.tokenizer, self.config, stream=self.problem_stream,
                               source_key=self.reward_fn_key)
        self._examine(out["reward_extra_info"])
        return out if return_dict else out["reward_tensor"]

    def _examine(self, extra: Mapping[str, list]) -> None:
        shown = 0
        for i, size in enumerate(extra["group_size"]):
            if shown >= self.num_examine:
                break
            print(f"[cuma] row {i}: group of {size}, majority={extra['majority'][i]!r}, "
                  f"agreement={extra['agreement'][i]:.2f}, masked={extra['masked'][i]}")
            shown += 1


def _reward_kwargs(config: Any) -> dict[str, Any]:
    reward_cfg = config.get("reward") if hasattr(config, "get") else None
    kwargs = reward_cfg.get("reward_kwargs") if reward_cfg is not None else None
    return {str(k): v for k, v in (kwargs or {}).items()}


if RewardManagerBase is not None:

    @_register_loop_manager(NAME)
    class CuMaRewardLoopManager(RewardManagerBase):
        """Per-sample reward loop: each sample waits for the n samples of its uid, then all get the vote.

        Settings come from `reward.reward_kwargs` (`min_votes`, `empty_votes`, `reward`,
        `last_number_fallback`, and `group_timeout_s`, default 600). The group size is the trainer's
        `actor_rollout_ref.rollout.n` (`val_kwargs.n` for samples flagged `validate`, as verl's v1 trainer
        flags them).
        """

        def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None,
                     reward_router_address: Any = None, reward_model_tokenizer: Any = None, **_: Any):
            super().__init__(config, tokenizer, compute_score)
            settings = _reward_kwargs(config)
            timeout = float(settings.pop("group_timeout_s", DEFAULT_GROUP_TIMEOUT_S))
            self.episode = episode_config(settings)
            workers = config.reward.get("num_workers", None)
            if workers != 1:
                raise ValueError(f"the CuMa reward loop votes over the n samples of a prompt, which must all reach "
                                 f"one reward worker: set reward.num_workers=1 (got {workers})")
            rollout = config.actor_rollout_ref.rollout
            self.group_size = int(rollout.n)
            self.val_group_size = int(rollout.get("val_kwargs", {}).get("n", 1))
            self.rendezvous: GroupRendezvous[tuple[str, Problem], tuple[float, dict]] = \
                GroupRendezvous(self._score, timeout_s=timeout)

        def _score(self, members: list[tuple[str, Problem]]) -> list[tuple[float, dict]]:
            return score_members(members, self.episode)

        async def run_single(self, data: Any) -> dict:
            loop = asyncio.get_running_loop()
            uid, text, problem = await loop.run_in_executor(None, read_sample, data, self.tokenizer)
            expected = expected_group_size(data, self.group_size, self.val_group_size)
            reward, extra = await self.rendezvous.join(uid, expected, (text, problem))
            return {"reward_score": reward, "reward_extra_info": extra}

    __all__ = ["NAME", "CuMaRewardLoopManager", "CuMaRewardManager"]
else:  # pragma: no cover
    __all__ = ["NAME", "CuMaRewardManager"]
