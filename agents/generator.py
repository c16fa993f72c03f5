"""The vLLM rollout generator: TorchRL's `vLLMWrapper`, adapted to what the loss reads (gotcha 13).

`TokenizedVLLMWrapper` is a correctness workaround, not a fast path. The transformers generator's fast path,
`PaddedTransformersWrapper`, lives with the other fast paths in `cuma_env.torchrl.fast_paths` (gotcha 18).
"""

from __future__ import annotations

from typing import Any

from torchrl.modules.llm import vLLMWrapper
from torchrl.modules.llm.policies.common import Text


class TokenizedVLLMWrapper(vLLMWrapper):
    """`vLLMWrapper` whose text-mode generation returns prompt tokens, full tokens and masks (gotcha 13).

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


def vllm_generator(llm: Any, tokenizer: Any, rollout: Any) -> TokenizedVLLMWrapper:
    """The rollout generator over a vLLM engine (an in-process `vllm.LLM` or TorchRL's `AsyncVLLM` replicas):
    text in, prompt tokens and masks out, no generation log-probs (the learner takes the on-policy ones from
    its own forward, agents.learner)."""
    return TokenizedVLLMWrapper(llm, tokenizer=tokenizer, input_mode="text", generate=True, return_log_probs=False,
                                pad_output=True, generate_kwargs=dict(max_tokens=rollout.max_new_tokens,
                                                                      temperature=rollout.temperature,
                                                                      top_p=rollout.top_p))
