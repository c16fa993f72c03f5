"""The `hf:` generator: a local transformers causal LM (torch and transformers are imported on first use).

The tokenizer's chat template is used when it has one (`add_generation_prompt=True`), a plain
`System:/User:/Assistant:` rendering otherwise. Sampling follows `SamplingParams` (temperature 0 means
greedy); a per-call seed seeds torch before sampling, so a call is reproducible on the same machine.
`finish_reason` is "length" when `max_tokens` new tokens were produced without an end-of-sequence token.
"""

from __future__ import annotations

from typing import Any

from .generator_types import Completion, GeneratorError, GeneratorSpecError, Messages, SamplingParams
from .prompts import render_plain


class TransformersGenerator:
    """A local causal LM through transformers; torch and transformers are imported on first use.

    Pass `model=` and `tokenizer=` objects to use already-loaded ones (tests, notebooks).
    """

    def __init__(self, model_id: str | None = None, *, params: SamplingParams = SamplingParams(),
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
                 model: Any = None, tokenizer: Any = None):
        if model_id is None and (model is None or tokenizer is None):
            raise GeneratorSpecError("TransformersGenerator needs a model path/hub id, or model= and tokenizer=")
        self.model_id = model_id or getattr(getattr(model, "config", None), "_name_or_path", "in-memory")
        self.params = params
        self.device, self.dtype, self.trust_remote_code = device, dtype, trust_remote_code
        self._model, self._tokenizer = model, tokenizer

    @property
    def name(self) -> str:
        return f"hf:{self.model_id}"

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.model_id, "device": self.device, "dtype": self.dtype,
                "temperature": self.params.temperature, "top_p": self.params.top_p,
                "max_tokens": self.params.max_tokens}

    def _load(self) -> tuple[Any, Any]:
        if self._model is not None and self._tokenizer is not None:
            return self._model, self._tokenizer
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype: Any = "auto"
        if self.dtype != "auto":
            dtype = getattr(torch, self.dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise GeneratorSpecError(f"unknown dtype {self.dtype!r} (use auto, float32, bfloat16, float16)")
        try:
            tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(
                self.model_id, trust_remote_code=self.trust_remote_code)
            model = self._model or AutoModelForCausalLM.from_pretrained(
                self.model_id, dtype=dtype, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as exc:  # a missing folder or one without a usable model or tokenizer
            raise GeneratorError(f"could not load the transformers model {self.model_id!r}: {exc}") from None
        model.to(device)
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        self.device = device
        return model, tokenizer

    def prompt_text(self, messages: Messages) -> tuple[str, bool]:
        """The prompt string, and whether it came from the tokenizer's chat template."""
        _, tokenizer = self._load()
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), True
        return render_plain(msgs), False

    def generate(self, messages: Messages, *, seed: int | None = None) -> Completion:
        import torch

        model, tokenizer = self._load()
        prompt, templated = self.prompt_text(messages)
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated)
        device = next(model.parameters()).device
        input_ids = enc["input_ids"].to(device)
        attention_mask = enc.get("attention_mask")
        attention_mask = attention_mask.to(device) if attention_mask is not None else torch.ones_like(input_ids)
        if seed is not None:
            torch.manual_seed(int(seed) % (2 ** 63))
        sample = self.params.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": self.params.max_tokens, "do_sample": sample}
        if sample:
            kwargs.update(temperature=self.params.temperature, top_p=self.params.top_p)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is not None:
            kwargs["pad_token_id"] = pad_id
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        new = out[0, input_ids.shape[1]:]
        eos = tokenizer.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        ended = bool(len(new)) and int(new[-1]) in eos_ids
        finish = "length" if len(new) >= self.params.max_tokens and not ended else "stop"
        text = tokenizer.decode(new, skip_special_tokens=True)
        return Completion(text, finish, self.model_id, {"prompt_tokens": int(input_ids.shape[1]),
                                                        "completion_tokens": int(len(new))})
