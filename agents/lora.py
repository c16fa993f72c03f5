"""LoRA adapters through `peft` (`model.lora_rank > 0`): train low-rank updates instead of every weight.

    policy = build_policy(ModelConfig(path="smollm2-135m", lora_rank=16), rollout)   # adapters injected
    plain = merged_state_dict(policy.model)      # base + scaled B @ A: a plain model's weights (save, vLLM)

The adapters are injected in place (`peft.inject_adapter_in_model`), so the policy stays the HF model it was:
generation, the shared prefill, TorchRL's wrappers, the KL reference (a frozen copy, equal to the base at
step 0 because LoRA's B starts at zero) and Ray workers (built from the same config) see the same module tree.
Only the adapters' weights require gradients, so the optimizer holds only them. A run's checkpoints keep the
adapters as they are (resume injects them again); its final `model/` is the merged plain model, which every
reader (`cuma eval`, a study cell, vLLM) loads without peft. The adapters' initial values are drawn from the
run's seed on a forked RNG, so adding them leaves the training's random stream where it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

ALL_LINEAR = "all-linear"  # peft: every linear layer but the output layer
_A, _B, _BASE = ".lora_A.default.weight", ".lora_B.default.weight", ".base_layer."


def add_lora(model: torch.nn.Module, *, rank: int, alpha: float, targets: str | Sequence[str] = ALL_LINEAR,
             seed: int = 0) -> torch.nn.Module:
    """Inject rank-`rank` LoRA adapters (scaling `alpha / rank`) into `model`'s `targets`; freeze the rest."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as error:
        raise ImportError('model.lora_rank needs peft: pip install "cuma-gym[lora]"') from error
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                        target_modules=targets if isinstance(targets, str) else list(targets))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(".lora_" in name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model.lora_targets {targets!r} matched no layer of {type(model).__name__}")
    model.cuma_lora_scaling = alpha / rank  # read by merged_state_dict
    return model


def has_lora(model: torch.nn.Module) -> bool:
    return hasattr(model, "cuma_lora_scaling")


def merge_lora_state(state: Mapping[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A plain model's state dict from one with adapters: W = W_base + scaling * B @ A for each adapted layer,
    its other entries renamed back (`x.base_layer.bias` -> `x.bias`); a state without adapters is returned as is."""
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith((_A, _B)):
            continue
        if _BASE in key:
            prefix, leaf = key.split(_BASE, 1)
            plain = f"{prefix}.{leaf}"
            if leaf == "weight":
                a, b = state[prefix + _A], state[prefix + _B]
                value = value + scaling * (b.to(value.dtype) @ a.to(value.dtype))
            merged[plain] = value
        else:
            merged[key] = value
    return merged


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s weights as a plain model holds them (adapters merged), detached."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return merge_lora_state(state, model.cuma_lora_scaling) if has_lora(model) else state


def lora_scaling(config: Mapping[str, Any]) -> float | None:
    """`alpha / rank` from a run's saved config dict (its `model` section), None without adapters."""
    model = config.get("model", {})
    rank = int(model.get("lora_rank", 0) or 0)
    return float(model.get("lora_alpha", 32.0)) / rank if rank > 0 else None
