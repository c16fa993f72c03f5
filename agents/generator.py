"""The rollout generator: TorchRL's `TransformersWrapper`, with its padded outputs built in one dense TensorDict.

TorchRL builds a generation's outputs (`text`, `tokens`, `masks`, `log_probs`) in a per-member lazy stack so
that ragged outputs fit. With `pad_output=True` every output is a padded tensor or a list of strings, so
the lazy stack only adds work: each of ~10 output fields is split and set member by member (~10 ms per
step of 128 members on the tiny model, 5-7% of a step; benchmarks/bench_step.py). Writing the same fields
into a dense TensorDict gives the same values: the wrapper then updates the env's batch from it exactly as
from the lazy one (tests/test_step_speed_equivalence.py compares whole batches with TorchRL's own wrapper).
Ragged outputs (`pad_output=False`) and every other input mode take TorchRL's code unchanged.
"""

from __future__ import annotations

from tensordict import LazyStackedTensorDict, TensorDict
from torchrl.modules.llm import TransformersWrapper


class PaddedTransformersWrapper(TransformersWrapper):
    """`TransformersWrapper` whose text-mode generation writes padded outputs into a dense TensorDict."""

    def _from_transformers_generate_text(self, td, cfg, out):
        if self.pad_output and not self.num_samples and isinstance(out, LazyStackedTensorDict) and out.ndim == 1:
            out = TensorDict(batch_size=out.batch_size, device=out.device)
        return super()._from_transformers_generate_text(td, cfg, out)
