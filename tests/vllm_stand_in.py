"""A stand-in for the `vllm` package, for the tests of the vLLM backend on machines where vLLM cannot run.

TEST DOUBLE: vLLM has no CPU wheel, so CI could never run `model.backend=vllm`. This module imitates the
part of vLLM's Python API (0.29-0.31) that TorchRL's `vLLMWrapper` and `agents.policy` touch, with the same
names, argument names and result types, and generates with the HF model of the same folder on the CPU:

- `vllm.LLM(model, dtype, seed, enable_prefix_caching, gpu_memory_utilization, max_model_len)`: refuses an
  unknown argument and a `max_model_len` above the model's positions, as vLLM does;
- `LLM.generate(prompts, sampling_params, use_tqdm)`: strings or `TokensPrompt`s; one `RequestOutput` per
  prompt with `n` `CompletionOutput`s whose `token_ids` end with the eos token when generation stopped on it;
- `LLM.collective_rpc(fn)`: calls `fn(worker)`; `worker.model_runner.model.load_weights(weights)` takes the
  HF names (`model.layers.0...`, `lm_head.weight`) and refuses any other name, as vLLM's loader does;
- `SamplingParams`, `TokensPrompt`, `RequestOutput`, `CompletionOutput` with vLLM's fields.

What it cannot tell: anything about real vLLM kernels, memory, or versions' behaviour beyond these names.
The real path is `tests/test_trainer.py::test_vllm_backend_trains_with_weight_sync` (GPU + vLLM only).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import torch


@dataclasses.dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    max_tokens: int | None = 16
    stop: Any = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    detokenize: bool = True
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False


def TokensPrompt(*, prompt_token_ids: list[int]) -> dict:  # noqa: N802 (vLLM's TypedDict)
    return {"prompt_token_ids": list(prompt_token_ids)}


@dataclasses.dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: Any
    finish_reason: str | None = None
    stop_reason: Any = None
    lora_request: Any = None


class RequestOutput:
    def __init__(self, request_id: str, prompt: str | None, prompt_token_ids: list[int], prompt_logprobs: Any,
                 outputs: list[CompletionOutput], finished: bool, metrics: Any = None, lora_request: Any = None,
                 encoder_prompt: Any = None, encoder_prompt_token_ids: Any = None, num_cached_tokens: int = 0):
        self.request_id, self.prompt, self.prompt_token_ids = request_id, prompt, prompt_token_ids
        self.prompt_logprobs, self.outputs, self.finished, self.metrics = prompt_logprobs, outputs, finished, metrics
        self.lora_request, self.encoder_prompt = lora_request, encoder_prompt
        self.encoder_prompt_token_ids, self.num_cached_tokens = encoder_prompt_token_ids, num_cached_tokens


class _Loader:
    """The model behind `worker.model_runner.model`: vLLM's `load_weights` contract over the HF weights."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def load_weights(self, weights: Any) -> set[str]:
        params = self.model.state_dict()
        loaded = set()
        for name, tensor in weights:
            if name not in params:
                raise ValueError(f"There is no module or parameter named {name!r} in {type(self.model).__name__}")
            with torch.no_grad():
                params[name].copy_(tensor.to(params[name].dtype))
            loaded.add(name)
        return loaded


class LLM:
    """`vllm.LLM`, generating with the HF model of `model` on the CPU (see the module docstring)."""

    def __init__(self, model: str, *, dtype: str = "auto", seed: int = 0, enable_prefix_caching: bool = True,
                 gpu_memory_utilization: float = 0.9, max_model_len: int | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=getattr(torch, dtype)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        limit = self.model.config.max_position_embeddings
        if max_model_len is not None and max_model_len > limit:
            raise ValueError(f"User-specified max_model_len ({max_model_len}) is greater than the derived "
                             f"max_model_len (max_position_embeddings={limit})")
        self.generator = torch.Generator().manual_seed(seed)
        self.worker = types.SimpleNamespace(model_runner=types.SimpleNamespace(model=_Loader(self.model)))
        self.requests = 0

    def collective_rpc(self, method: Any, args: tuple = (), kwargs: dict | None = None) -> list:
        return [method(self.worker, *args, **(kwargs or {}))]

    def reset_prefix_cache(self) -> bool:
        return True

    @torch.no_grad()
    def generate(self, prompts: Any, sampling_params: SamplingParams | None = None, *, use_tqdm: bool = True
                 ) -> list[RequestOutput]:
        params = sampling_params or SamplingParams()
        prompts = prompts if isinstance(prompts, list) else [prompts]
        return [self._one(p, params) for p in prompts]

    def _one(self, prompt: Any, params: SamplingParams) -> RequestOutput:
        ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else self.tokenizer(prompt)["input_ids"]
        eos = self.tokenizer.eos_token_id
        outputs = []
        for index in range(params.n):
            tokens: list[int] = []
            context = torch.tensor([ids])
            for _ in range(params.max_tokens or 16):
                logits = self.model(input_ids=context).logits[0, -1].float()
                if params.temperature == 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / params.temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=self.generator))
                tokens.append(token)
                context = torch.cat([context, torch.tensor([[token]])], 1)
                if token == eos:
                    break
            text = self.tokenizer.decode(tokens, skip_special_tokens=params.skip_special_tokens) \
                if params.detokenize else ""
            outputs.append(CompletionOutput(index=index, text=text, token_ids=tokens, cumulative_logprob=None,
                                            logprobs=None, finish_reason="stop" if tokens[-1] == eos else "length"))
        self.requests += 1
        return RequestOutput(str(self.requests), prompt if isinstance(prompt, str) else None, list(ids), None,
                             outputs, True)


def install(monkeypatch: Any) -> types.ModuleType:
    """Make `import vllm` (and TorchRL's vLLM wrapper) see this stand-in for the rest of one test."""
    import sys

    from tensordict.tensorclass import from_dataclass
    from torchrl.modules.llm.policies import vllm_wrapper

    vllm = types.ModuleType("vllm")
    LLM.__module__ = "vllm"  # TorchRL recognises a synchronous engine by its class: `vllm.LLM`
    outputs = types.ModuleType("vllm.outputs")
    outputs.RequestOutput, outputs.CompletionOutput = RequestOutput, CompletionOutput
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = TokensPrompt
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = SamplingParams
    vllm.LLM, vllm.SamplingParams, vllm.outputs, vllm.inputs = LLM, SamplingParams, outputs, inputs
    for name, module in (("vllm", vllm), ("vllm.outputs", outputs), ("vllm.inputs", inputs),
                         ("vllm.sampling_params", sampling)):
        monkeypatch.setitem(sys.modules, name, module)
    for name, value in (("_HAS_VLLM", True), ("SamplingParams", SamplingParams), ("RequestOutput", RequestOutput),
                        ("TokensPrompt", TokensPrompt)):
        monkeypatch.setattr(vllm_wrapper, name, value)
    monkeypatch.setattr(vllm_wrapper.vLLMWrapper, "_CompletionOutput_tc", from_dataclass(CompletionOutput),
                        raising=False)
    return vllm
