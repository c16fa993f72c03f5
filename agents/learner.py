"""The learner: TorchRL's `GRPOLoss` (or `DAPO`, `CISPOLoss`: `train.loss`, agents/losses.py) on the kept groups,
AdamW with warm-up + cosine, gradient clipping.

    learner = Learner(policy, config.train)
    stats = learner.step(batch.data)        # one optimizer step; returns loss / grad norm / KL / ...

Speed and correctness choices:
- Only groups that can teach enter the forward/backward: masked groups are dropped by the vote (option:
  `masked_groups: zero_advantage` keeps them, advantage 0, in the loss denominators and KL), and with
  `skip_uniform_groups` every other group whose advantages are all zero is dropped here (its gradient is
  exactly zero; it would only dilute the token mean).
- On-policy reuse: there is one optimizer step per batch, so the "old" log-probs equal the current ones.
  The loss (`agents.losses.OnPolicy`) takes them from its own forward, detached (ratio 1, gradient of the
  ratio intact), instead of a second scoring pass. This also sidesteps gotcha 1 (`log_probs.full` is None after
  `TransformersWrapper` generation). The scorer is a tokens-mode wrapper, so the loss uses the `sft` masking
  strategy (gotcha 4: tokens-mode actor + `sft`).
- Optional KL to a frozen reference (`kl_coef > 0`): the reference's log-probs are computed for the kept
  members only, under `no_grad`, and stored where GRPOLoss reads them.
- Micro-batches (`train.micro_batch`): the kept rows go through forward/backward N at a time, each part's
  loss weighted by its share of the tokens (or rows) GRPOLoss averages over, so the gradients sum to the
  one-pass gradient while only N rows of logits exist at once (a 0.5B model's vocabulary makes one row of
  3k tokens ~1 GB of logits). None (the default) is one pass.
- Dense loss input (`loss_batch`): the kept members arrive lazily stacked (one small TensorDict per member,
  text and tensorclasses included); GRPOLoss and the scorer copy and re-read that batch several times, which
  cost more than the model's forward+backward on the tiny base (docs/performance.md). The loss gets one dense
  TensorDict holding only the entries it reads, padded as the scorer pads them
  (tests/test_step_speed_equivalence.py: same loss and gradient as on the original batch).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from agents.config import TrainConfig
from agents.losses import GRPOLoss, OnPolicyGRPOLoss, make_loss  # noqa: F401 - GRPOLoss, OnPolicyGRPOLoss: re-exported
from agents.policy import Policy

REF_KEY = ("next", "ref_log_probs", "full")
# Entries GRPOLoss (sft masking), the tokens-mode scorer and `response_tokens` read, with the padding value the
# scorer uses (token padding only ever lands on attention-masked positions, so the loss does not see it).
# None: the tokenizer's pad id. Optional entries are copied when present.
LOSS_KEYS = ((("tokens", "full"), None), (("tokens", "prompt"), None), (("masks", "all_attention_mask"), False),
             (("masks", "all_assistant_mask"), False), ("advantage", 0.0), (("log_probs", "full"), 0.0),
             (REF_KEY, 0.0), (("collector", "mask"), False), ("shifted_valid", False))


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the peak lr for optimizer step `step` (0-based): linear warm-up, then cosine or flat."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class LearnStats:
    loss: float = 0.0
    grad_norm: float = 0.0
    lr: float = 0.0
    clip_fraction: float = 0.0
    kl_to_ref: float = 0.0
    entropy: float = 0.0
    trained_groups: int = 0
    trained_tokens: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def loss_batch(batch: Any, pad_token_id: int) -> Any:
    """One dense TensorDict with exactly the entries the loss reads (left-padded like the scorer pads them)."""
    from tensordict import TensorDict

    dense = TensorDict(batch_size=batch.batch_size[:1], device=batch.device)
    for key, pad in LOSS_KEYS:
        value = batch.get(key, None, as_padded_tensor=True, padding_side="left",
                          padding_value=pad_token_id if pad is None else pad)
        if value is not None:
            dense.set(key, value)
    return dense


class ContextOverflow(ValueError):
    """A prompt plus its response is longer than the model's positions: the scorer cannot read it."""


def check_positions(batch: Any, policy: Policy) -> None:
    """`ContextOverflow` (one clear line) before TorchRL's scorer refuses a sequence past the model's positions.

    `Rollout` checks a sample of the training prompts at the start; this catches a longer one drawn later."""
    limit = getattr(policy.model.config, "max_position_embeddings", None)
    width = batch.get(("tokens", "full")).shape[-1]
    if isinstance(limit, int) and width > limit:
        raise ContextOverflow(f"a rollout of {width} tokens (prompt + response) exceeds the model's {limit} "
                              "positions; use a model with a longer context, a smaller rollout.max_new_tokens, "
                              "or shorter problems (env.levels, env.pool)")


def response_tokens(batch: Any) -> int:
    """Response tokens in a batch: attention-mask positions after the (left-padded) prompt block."""
    mask = batch.get(("masks", "all_attention_mask"), as_padded_tensor=True, padding_value=False)
    prompt = batch.get(("tokens", "prompt"), as_padded_tensor=True)
    if mask is None or prompt is None:
        return 0
    return int(mask[..., prompt.shape[-1]:].sum())


class Learner:
    def __init__(self, policy: Policy, config: TrainConfig, group_size: int):
        self.policy, self.config, self.group_size = policy, config, group_size
        self.loss_module = make_loss(policy.scorer, config, policy.device)  # train.loss: agents/losses.py
        params = [p for p in policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.adam_betas),
                                           weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._factor)
        self.reference = policy.make_reference() if config.kl_coef > 0 else None

    def _factor(self, step: int) -> float:
        c = self.config
        return lr_factor(step, c.steps, c.warmup_steps, c.schedule, c.min_lr_ratio)

    def select(self, data: Any) -> Any:
        """The members of groups that carry a gradient (see the module docstring); None if there are none."""
        if data is None:
            return None
        n = data.batch_size[0]
        advantage = data.get("advantage").reshape(n // self.group_size, self.group_size)
        masked = data.get(("next", "masked")).reshape(n // self.group_size, self.group_size)[:, 0]
        keep = torch.ones(n // self.group_size, dtype=torch.bool, device=advantage.device)
        if self.config.skip_uniform_groups:
            keep = (advantage != 0).any(-1) | (masked & (self.config.masked_groups == "zero_advantage"))
        if not keep.any():
            return None
        if keep.all():
            return data
        index = torch.arange(n, device=keep.device).reshape(-1, self.group_size)[keep].reshape(-1)
        return data[index]

    def step(self, data: Any) -> LearnStats:
        """One optimizer step on the selected members (the schedule advances even with nothing to learn)."""
        import time

        start = time.perf_counter()
        stats = LearnStats(lr=self.optimizer.param_groups[0]["lr"])
        batch = self.select(data)
        self.optimizer.zero_grad(set_to_none=True)
        if batch is not None:
            batch = loss_batch(batch, self.policy.tokenizer.pad_token_id)
            check_positions(batch, self.policy)
            batch = batch.to(self.policy.device) if self.policy.device.type != "cpu" else batch
            totals = self._backward(batch)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            if self.config.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            else:
                norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            self.optimizer.step()
            stats.loss, stats.clip_fraction, stats.kl_to_ref, stats.entropy = totals
            stats.grad_norm = float(norm)
            stats.trained_groups = batch.batch_size[0] // self.group_size
            stats.trained_tokens = response_tokens(batch)
        else:
            self.optimizer.step()  # no gradients: a no-op that keeps the scheduler's step order
        self.scheduler.step()
        self.policy.sync_weights()
        stats.seconds = time.perf_counter() - start
        return stats

    def _backward(self, batch: Any) -> tuple[float, float, float, float]:
        """Loss and gradients of `batch`, `train.micro_batch` rows at a time; (loss, clip fraction, KL, entropy).

        Each part's terms are weighted by its share of what GRPOLoss averages over, so the summed gradient is
        the one-pass gradient (tests/test_micro_batch.py): the objective and entropy by response tokens
        (`token_mean`) or rows (`prompt_mean`), the KL and the logged means by rows (all of a row's positions).
        """
        rows = batch.batch_size[0]
        size = min(self.config.micro_batch or rows, rows)
        tokens = response_tokens(batch) if size < rows else None  # the positions the `sft` mask keeps
        totals = [0.0, 0.0, 0.0, 0.0]
        for start in range(0, rows, size):
            part = batch[start:start + size] if size < rows else batch
            by_rows = part.batch_size[0] / rows
            by_terms = by_rows if tokens is None or self.config.aggregation == "prompt_mean" else \
                response_tokens(part) / tokens
            if self.reference is not None:
                with torch.no_grad(), self.policy.autocast():
                    ref = self.reference(part.copy())
                part.set(REF_KEY, ref.get(("log_probs", "full")).float())
            with self.policy.autocast():
                out = self.loss_module(part)
            loss = out.loss_objective
            if getattr(out, "loss_entropy", None) is not None:
                loss = loss + out.loss_entropy
            loss = loss * by_terms  # one pass: 1.0, which changes no bit of the loss or its gradient
            if getattr(out, "loss_kl_to_ref", None) is not None:
                loss = loss + out.loss_kl_to_ref * by_rows
            loss.backward()
            for i, value in enumerate((loss, out.clip_fraction, out.kl_to_ref, out.entropy)):
                if value is not None:
                    totals[i] += float(value.detach()) * (1.0 if i == 0 else by_rows)
        return tuple(totals)

    def state_dict(self) -> dict[str, Any]:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.reference is not None:
            state["reference"] = self.reference.model.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.reference is not None and "reference" in state:
            self.reference.model.load_state_dict(state["reference"])
