"""Agents for CuMa gym: the TorchRL GRPO agent, the embedded tiny base model, evaluation and the `cuma` CLI."""
