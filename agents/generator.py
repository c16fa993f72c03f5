"""The rollout generators: TorchRL's `TransformersWrapper` and `vLLMWrapper`, adapted to what the loss reads.

`PaddedTransformersWrapper`: TorchRL's `TransformersWrapper`, with its padded outputs built in one dense
TensorDict.

TorchRL builds a generation's outputs (`text`, `tokens`, `masks`, `log_probs`) in a per-member lazy stack so
that ragged outputs fit. With `pad_output=True` every output is a padded tensor or a list of strings, so
the lazy stack only adds work: each of ~10 output fields is split and set member by member (~10 ms per
step of 128 members on the tiny model, 5-7% of a step; benchmarks/bench_step.py). Writing the same fields
into a dense TensorDict gives the same values: the wrapper then updates the env's batch from it exactly as
from the lazy one (tests/test_step_speed_equivalence.py compares whole batches with TorchRL's own wrapper).
Ragged outputs (`pad_output=False`) and every other input mode take TorchRL's code unchanged.
"""

from __future__ import annotations

from typing import Any

from tensordict import LazyStackedTensorDict, TensorDict
from torchrl.modules.llm import TransformersWrapper, vLLMWrapper
from torchrl.modules.llm.policies.common import Text


class PaddedTransformersWrapper(TransformersWrapper):
    """`TransformersWrapper` whose text-mode generation writes padded outputs into a dense TensorDict."""

    def _from_transformers_generate_text(self, td, cfg, out):
        if self.pad_output and not self.num_samples and isinstance(out, LazyStackedTensorDict) and out.ndim == 1:
            out = TensorDict(batch_size=out.batch_size, device=out.device)
        return super()._from_transformers_generate_text(td, cfg, out)


class TokenizedVLLMWrapper(vLLMWrapper):
    """`vLLMWrapper` whose text-mode generation returns prompt tokens, full tokens and masks.

    TorchRL 0.14's text path hands vLLM the strings and returns only the response tokens (`tokens.prompt`,
    `tokens.full` and both masks are None), but the learner's scorer and GRPOLoss read all four. Here the
    prompts are tokenized as `TransformersWrapper` tokenizes them (left-padded, the wrapper's tokenizer
    kwargs) and generated from the token ids through TorchRL's own tokens path, which builds every one of
    them; the text entries are then filled as TorchRL's text path fills them (`skip_special_tokens=False`).
    """

    def _generate_from_text(self, text: Any, sampling_params: Any, out: Any) -> Any:
        prompts = [text] if isinstance(text, str) else list(text if isinstance(text, list) else text.tolist())
        if self.num_samples is not None or not self.pad_output:
            raise NotImplementedError("TokenizedVLLMWrapper supports pad_output=True with one sample per row "
                                      "(repeat a prompt for a group, as the CuMa env does)")
        encoded = self.tokenizer(prompts, **self.tokenizer_kwargs)
        out = self._generate_from_tokens(None, encoded["input_ids"], sampling_params, out)
        responses = out.get((self.tokens_key, "response"), as_padded_tensor=True)
        lengths = out.get((self.masks_key, "all_assistant_mask"), as_padded_tensor=True).sum(-1).tolist()
        response_text = self.tokenizer.batch_decode([row[:n] for row, n in zip(responses, lengths)],
                                                    skip_special_tokens=False)
        text_obj = Text._from_tensordict(out.empty())
        with text_obj.view(-1) as flat:
            flat.prompt = prompts
            flat.response = response_text
            flat.full = self._cat_text(prompts, response_text)
        out.set(self.text_key, text_obj)
        return out
