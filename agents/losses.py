"""The policy-gradient losses `train.loss` names, TorchRL's own classes made on-policy.

    loss_module = make_loss(policy.scorer, config.train, policy.device)

- `grpo`: `GRPOLoss`, the PPO-style clipped surrogate `-min(r * A, clip(r, 1 - eps, 1 + eps) * A)`.
- `dapo`: `DAPO` (the same surrogate with Clip-Higher: an upper bound `1 + clip_epsilon_high`, 0.28 by default,
  above the lower `1 - clip_epsilon`) averaged over tokens (`token_mean`).
- `cispo`: `CISPOLoss`, `-clip(r, 1 - eps_low, 1 + eps_high) * A`: the clipped importance weight times the
  advantage, with no PPO min.

The learner makes one optimizer step per batch, so the "old" log-probs are the current ones: `OnPolicy` takes
them from the loss's own forward, detached, instead of a second scoring pass (it also sidesteps gotcha 1,
`log_probs.full` empty after `TransformersWrapper` generation). The ratio `r` is then exactly 1, so no clip
bound binds and the three objectives give the same loss and gradient, `-A * grad log pi` per token; they part
only where the old log-probs come from another policy (tests/test_losses.py shows both).
"""

from __future__ import annotations

from typing import Any

import torch
from torchrl.objectives.llm import DAPO, CISPOLoss, GRPOLoss

DAPO_CLIP_HIGH = 0.28  # the DAPO paper's recommended upper clip (eps_low 0.2, eps_high 0.28; its Eq. 10)


class OnPolicy:
    """Mixin for a TorchRL LLM loss: old log-probs = the current forward's, detached (ratio 1, its gradient kept)."""

    def _log_weight(self, tensordict, adv_shape):
        cur_log_prob, dist, _ = self._get_cur_log_prob(tensordict)
        mask = dist.mask
        cur_log_prob = torch.where(mask, cur_log_prob, 0.0)
        prev_log_prob = cur_log_prob.detach()
        log_weight = (cur_log_prob - prev_log_prob).unsqueeze(-1)
        kl_approx = (prev_log_prob - cur_log_prob).unsqueeze(-1)
        tensordict.set("_cur_log_prob", cur_log_prob)
        return log_weight, dist, kl_approx, mask


class OnPolicyGRPOLoss(OnPolicy, GRPOLoss):
    """`GRPOLoss`, on-policy."""


class OnPolicyDAPO(OnPolicy, DAPO):
    """`DAPO`, on-policy."""


class OnPolicyCISPOLoss(OnPolicy, CISPOLoss):
    """`CISPOLoss`, on-policy."""


LOSS_CLASSES: dict[str, type[GRPOLoss]] = {"grpo": OnPolicyGRPOLoss, "dapo": OnPolicyDAPO, "cispo": OnPolicyCISPOLoss}


def clip_bounds(config: Any) -> float | tuple[float, float]:
    """TorchRL's `clip_epsilon`: a float (symmetric) unless an upper bound is set, or the loss is dapo."""
    high = config.clip_epsilon_high
    if high is None and config.loss == "dapo":
        high = DAPO_CLIP_HIGH
    return config.clip_epsilon if high is None else (config.clip_epsilon, high)


def make_loss(scorer: Any, config: Any, device: torch.device | None = None) -> GRPOLoss:
    """The on-policy loss `config.loss` names (a `TrainConfig`), reading the tokens-mode scorer's `sft` mask
    (gotcha 4: tokens-mode actor + `sft`)."""
    return LOSS_CLASSES[config.loss](
        scorer, clip_epsilon=clip_bounds(config), entropy_bonus=config.entropy_coef > 0,
        entropy_coeff=config.entropy_coef, kl_to_ref_coeff=config.kl_coef or None, masking_strategy="sft",
        aggregation=config.aggregation, device=device)
