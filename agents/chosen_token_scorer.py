"""The loss's log-probs of the chosen tokens, without a float32 log-softmax over every position's vocabulary.

TorchRL's tokens-mode `TransformersWrapper` (the learner's scorer) runs the whole causal LM, so the output
layer makes logits for every position of every row (prompt included), copies them once more to shift them,
and takes `cross_entropy` over the full vocabulary. With a real vocabulary (SmolLM2: 49,152; Qwen2.5: 151,936)
that is a quarter of a 135M model's forward and several full-size float32 tensors per batch.
`ChosenTokenScorer` computes the same numbers by a shorter road:

- `GRPOLoss` (masking strategy `sft`) asks the scorer for a distribution over the full logits and takes
  `log_prob(tokens)` of it; here the distribution is a small object over the decoder's hidden states (same
  call, same masks and positions as TorchRL's, so the same hidden states);
- its `log_prob` runs the output layer only on the columns where some row has a response token (the loss's
  mask, built by TorchRL's rule; every other position is 0, as in TorchRL's), in chunks of `chunk_rows`
  positions, each position's log-prob of its token taken as `logit[token] - logsumexp(logits)`.

Models whose logits are not `lm_head(hidden)` (final soft-capping, a scaled head), unpadded outputs and every
other call (generation, `forward`, other masking strategies) take TorchRL's path unchanged.
tests/test_chosen_token_scorer.py checks the log-probs, the loss, the entropy and the gradient against TorchRL's.
"""

from __future__ import annotations

import torch
from torchrl.modules.llm import TransformersWrapper

__all__ = ["ChosenTokenDist", "ChosenTokenScorer", "chosen_token_log_probs"]

_UNSUPPORTED_CONFIG = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


def chosen_token_log_probs(hidden: torch.Tensor, weight: torch.Tensor, tokens: torch.Tensor, *,
                           bias: torch.Tensor | None = None, chunk_rows: int = 1024) -> torch.Tensor:
    """log softmax(hidden @ weight.T + bias)[token] for each position of `hidden` (..., H), `tokens` (...),
    computed `chunk_rows` positions at a time (the full-vocabulary logits of one chunk exist at once)."""
    shape = tokens.shape
    flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), tokens.reshape(-1)
    parts = []
    for start in range(0, flat_t.shape[0], chunk_rows):
        logits = torch.nn.functional.linear(flat_h[start:start + chunk_rows], weight, bias).float()
        chosen = logits.gather(-1, flat_t[start:start + chunk_rows, None]).squeeze(-1)
        parts.append(chosen - torch.logsumexp(logits, dim=-1))
    return torch.cat(parts).reshape(shape) if parts else flat_h.new_zeros(shape, dtype=torch.float32)


class ChosenTokenDist:
    """What `GRPOLoss` reads of the `sft` distribution (`log_prob(action)`, `mask`, `entropy()`), from hidden
    states: `log_prob` runs the output layer only on scored columns; `entropy` (only with an entropy bonus)
    builds TorchRL's full distribution."""

    def __init__(self, hidden: torch.Tensor, head: torch.nn.Linear, mask: torch.Tensor, chunk_rows: int):
        self.hidden, self.head, self.mask, self.chunk_rows = hidden, head, mask, chunk_rows
        columns = mask.any(0).nonzero()
        self.first = max(1, int(columns[0])) if columns.numel() else mask.shape[-1]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """TorchRL's `LLMMaskedCategorical.log_prob`: the log-prob of each token at scored positions, else 0."""
        out = torch.zeros(value.shape, dtype=torch.float32, device=value.device)
        if self.first < value.shape[-1]:
            tokens = value[:, self.first:].clamp(min=0)  # -100 (ignored) positions are zeroed below
            out[:, self.first:] = chosen_token_log_probs(self.hidden[:, self.first - 1:-1], self.head.weight,
                                                         tokens, bias=self.head.bias, chunk_rows=self.chunk_rows)
        return out.masked_fill(~self.mask, 0.0)

    def entropy(self) -> torch.Tensor:
        from torchrl.modules.distributions import LLMMaskedCategorical

        logits = self.head(self.hidden)[:, :-1]
        logits = torch.cat([torch.zeros_like(logits[:, :1]), logits], 1)  # TorchRL's shift
        return LLMMaskedCategorical(logits=logits, mask=self.mask).entropy()


class ChosenTokenScorer(TransformersWrapper):
    """`TransformersWrapper` (tokens mode, padded output) whose `sft` distribution scores only response columns.

    Everything else (generation, `forward`, log-probs, other masking strategies) is TorchRL's.
    """

    chunk_rows: int = 1024
    share_prompts: bool = False  # `model.shared_prompt_forward`: a group's prompt block forwarded once

    def _get_sft_dist(self, tensordict, **kwargs):
        if kwargs or self.generate or not self.pad_output or self.input_mode != "tokens" \
                or not self._fast_path_applies():
            return super()._get_sft_dist(tensordict, **kwargs)
        pad = self.tokenizer.pad_token_id
        tokens = tensordict.get(self.input_key, as_padded_tensor=True, padding_side="left", padding_value=pad)
        prompt = tensordict.get(("tokens", "prompt"), as_padded_tensor=True, padding_side="left",
                                padding_value=-100)
        if tokens is None or prompt is None or tokens.numel() == 0:
            return super()._get_sft_dist(tensordict, **kwargs)
        max_len = getattr(self.model.config, "max_position_embeddings", None)
        if max_len is not None and tokens.shape[-1] > max_len:  # TorchRL's own refusal, same message
            return super()._get_sft_dist(tensordict, **kwargs)
        attention = tensordict.get(("masks", "all_attention_mask"), as_padded_tensor=True, padding_side="left",
                                   padding_value=False)
        if attention is None:
            attention = tokens != pad
        tokens = tokens.to(self._device) if self._device is not None else tokens
        attention = attention.to(tokens.device)
        # as TorchRL's `_get_dist_with_prompt_mask`: attended positions past the (padded) prompt width
        response = attention.bool().clone()
        response[..., :prompt.shape[-1]] = False
        hidden = self._hidden_states(tokens, attention.long(), prompt.shape[-1])
        return ChosenTokenDist(hidden, self.model.get_output_embeddings(), response, self.chunk_rows)

    def _hidden_states(self, tokens: torch.Tensor, attention: torch.Tensor, split: int) -> torch.Tensor:
        """The decoder's last hidden states of every position; with `share_prompts`, the columns before `split`
        (the prompt block) run once per distinct row of them (a GRPO group's rows share one) and their KV cache
        is gathered to every row for the columns after it. Causal attention makes the two the same numbers up
        to float rounding; the gradient reaches the shared prompt's weights through the gather."""
        decoder = self.model.get_decoder()
        rows, width = tokens.shape
        if not self.share_prompts or split < 1 or split >= width:
            return decoder(tokens, attention).last_hidden_state
        head = torch.cat([tokens[:, :split], attention[:, :split]], 1)
        distinct, index = torch.unique(head, dim=0, return_inverse=True)
        if distinct.shape[0] * 4 > rows * 3:  # little to share: one plain forward
            return decoder(tokens, attention).last_hidden_state
        from transformers import DynamicCache

        from agents.shared_prefill import _cache_keyword

        keyword = _cache_keyword(decoder)
        try:
            cache = DynamicCache(config=self.model.config)
        except TypeError:  # transformers < 4.56: no config argument
            cache = DynamicCache()
        prompt_hidden = decoder(distinct[:, :split], distinct[:, split:], use_cache=True,
                                **{keyword: cache}).last_hidden_state
        cache.batch_select_indices(index)
        rest = decoder(tokens[:, split:], attention, use_cache=True, **{keyword: cache}).last_hidden_state
        return torch.cat([prompt_hidden[index], rest], 1)

    def _fast_path_applies(self) -> bool:
        config = getattr(self.model, "config", None)
        if config is None or any(getattr(config, name, None) for name in _UNSUPPORTED_CONFIG):
            return False
        head = self.model.get_output_embeddings() if hasattr(self.model, "get_output_embeddings") else None
        return isinstance(head, torch.nn.Linear) and hasattr(self.model, "get_decoder")
