"""Training configuration: dataclasses, YAML presets, `key=value` overrides, validation.

    config = load_config(preset="tiny-cuma-gated", overrides=["train.lr=1e-5", "steps=50"])
    config = load_config(path="my.yaml")                   # a YAML file in the same layout as a preset
    config.to_dict(); save_config(config, "run/config.yaml")

A YAML file (or preset) may name a `preset:` to start from and change only some keys. Overrides use dotted
keys (`train.lr=1e-5`) or a leaf name that is unique across sections (`lr=1e-5`); values are parsed as
YAML (`env.levels=[1,2]`, `eval.every=0`). `curriculum.options` is a free mapping handed to
`curricula.make_schedule`, so `curriculum.options.window=16` works too. `env.pool` is a nested section
(`env.pool.kind=skewed`): which problems the run trains on (see `PoolConfig`, built by `agents.train_pool`).
Every problem (unknown key, wrong type, value out of range, unknown schedule option) is one `ConfigError`
whose message is one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "tiny-cuma-gated"
TINY_MODEL = "tiny"  # `model.path: tiny` = the embedded tiny base (installed and cached on first use)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(source: str) -> bool:
    """Whether a model source names a Hugging Face hub repo (`owner/name`) rather than a local path: it looks like
    one (one `/`, no leading `/`, `.` or `~`) and is not an existing path. Anything else is a local path."""
    return bool(_HUB_ID.fullmatch(source)) and not Path(source).exists()


class ConfigError(ValueError):
    """A configuration problem, reported as one line."""


@dataclass
class ModelConfig:
    path: str = TINY_MODEL          # "tiny", a local HF model directory, or a hub id (Qwen/Qwen2.5-0.5B)
    backend: str = "transformers"   # transformers | vllm (GPU only, optional extra)
    device: str = "auto"            # auto (cuda if available) | cpu | cuda | cuda:N
    dtype: str = "auto"             # auto (bfloat16 on cuda, float32 on cpu) | float32 | bfloat16 (float16: refused)
    num_threads: int = 1            # torch intra-op threads on CPU (1 is fastest for small models)
    vllm_gpu_memory_utilization: float = 0.35
    vllm_max_model_len: int = 4096


POOL_KINDS = ("split", "skewed", "file")


@dataclass
class PoolConfig:
    """The training pool (`agents.train_pool.training_source`); the held-out evaluation is never affected."""

    kind: str = "split"                      # split: the env id's train split | skewed | file
    path: str | None = None                  # file: a curated JSONL (pools' layout; `cuma curate` / `calibrate`)
    size: int | None = None                  # skewed: problems in the pool (null: 1000)
    level_field: str = "level"               # file: the record field holding the level (measured_level)
    top_up: bool | list[int] = False         # file: fill levels (true: every level; or a list) from the split


@dataclass
class EnvConfig:
    id: str = "CuMa-Arith-v0"
    levels: list[int] | None = None          # None: every level of the source
    reward: str = "masked_majority"          # masked_majority | majority | self_certainty | ground_truth
    min_votes: int | float = 2               # mask threshold: a count, or a share of the group (0.75 = 6 of 8)
    empty_votes: bool = False                # unparsable answers vote as one cluster (TTRL's code); default: never
    prompt_template: str | None = None       # None: the task's own (compact for arith)
    data_dir: str | None = None              # None: $CUMA_DATA_DIR
    source_seed: int = 0                     # order of the problem source (arith permutation seed)
    pool: PoolConfig = field(default_factory=PoolConfig)  # what the agent trains on (default: the train split)


@dataclass
class CurriculumConfig:
    schedule: str = "agreement_gated"        # sequential | agreement_gated | learning_progress | uniform | fixed
    options: dict[str, Any] = field(default_factory=dict)  # kwargs of curricula.make_schedule
    probe: bool = True                       # give the stream a probe hook (sample another level untrained)


@dataclass
class RolloutConfig:
    group_size: int = 8                      # N responses per prompt
    prompts_per_step: int = 16               # groups per optimizer step
    temperature: float = 0.6
    top_p: float = 1.0
    max_new_tokens: int = 8


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
    clip_epsilon: float = 0.2                # GRPO ratio clip
    kl_coef: float = 0.0                     # KL to a frozen reference copy of the start model; 0: no reference
    entropy_coef: float = 0.0
    masked_groups: str = "drop"              # drop | zero_advantage (kept in the loss with advantage 0)
    skip_uniform_groups: bool = True         # drop groups whose advantages are all 0 from forward/backward
    aggregation: str = "token_mean"          # token_mean | prompt_mean
    micro_batch: int | None = None           # rows per forward/backward, gradients summed to the same update
                                             # (None: all kept rows at once; set it when the logits do not fit)


@dataclass
class EvalConfig:
    every: int = 25                          # held-out evaluation every K steps (0: only at start and end)
    n_per_level: int = 100                   # held-out problems per level (arith test split)
    samples: int = 4                         # sampled pass@1 uses this many samples per problem
    temperature: float = 0.6
    max_new_tokens: int | None = None        # None: rollout.max_new_tokens
    batch_size: int = 512


@dataclass
class OutputConfig:
    checkpoint_every: int = 50               # steps between checkpoints (also at the end and on Ctrl-C)
    keep_checkpoints: int = 2
    tensorboard: bool = True                 # when tensorboard is installed
    progress: bool = True


@dataclass
class Config:
    name: str = "custom"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, overrides: list[str] | dict[str, Any]) -> "Config":
        data = self.to_dict()
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        for key, value in items:
            set_key(data, key, value)
        return from_dict(data)


TOP_KEYS = frozenset(f.name for f in dataclasses.fields(Config))
_SECTION_TYPES = {"model": ModelConfig, "env": EnvConfig, "curriculum": CurriculumConfig, "rollout": RolloutConfig,
                  "train": TrainConfig, "eval": EvalConfig, "output": OutputConfig}
CHOICES = {"model.backend": ("transformers", "vllm"), "model.dtype": ("auto", "float32", "bfloat16", "float16"),
           "env.reward": ("masked_majority", "majority", "self_certainty", "ground_truth"),
           "env.pool.kind": POOL_KINDS,
           "train.schedule": ("cosine", "constant"), "train.masked_groups": ("drop", "zero_advantage"),
           "train.aggregation": ("token_mean", "prompt_mean")}
# keys that may change when a run is resumed: how long it runs, how it is evaluated, saved and shown.
# Only `train.steps` changes a step's numbers: it is also the horizon of the warm-up + cosine lr schedule, so a
# run resumed with more steps follows the longer schedule from its current step on (from there its lr, and
# so its weights, differ from the original run's; they equal a fresh run of the new length only up to the
# first step whose lr differs). `Trainer.resume` refuses fewer steps than the checkpoint has already run.
RESUMABLE_KEYS = frozenset({"train.steps", "eval.every", "output.checkpoint_every", "output.keep_checkpoints",
                            "output.tensorboard", "output.progress", "eval.batch_size"})


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        hint = difflib.get_close_matches(name, preset_names(), n=1)
        raise ConfigError(f"unknown preset {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; presets: {', '.join(preset_names())}")
    return path


def read_yaml(path: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A YAML config as a plain dict, with its `preset:` base (if any) merged underneath."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    base = data.pop("preset", None)
    if base in _seen:
        raise ConfigError(f"{path}: preset cycle through {base!r}")
    return data if base is None else deep_merge(read_yaml(preset_path(base), (*_seen, base)), data)


def load_config(preset: str | None = None, path: str | Path | None = None,
                overrides: list[str] | None = None) -> Config:
    """A validated `Config` from a preset name or a YAML file (default: the default preset) plus overrides."""
    if preset is not None and path is not None:
        raise ConfigError("give a preset or a config file, not both")
    if path is not None:
        data = read_yaml(path)
    else:
        data = read_yaml(preset_path(preset or DEFAULT_PRESET))
        data.setdefault("name", preset or DEFAULT_PRESET)
    for item in overrides or []:
        key, value = parse_override(item)
        set_key(data, key, value)
    return from_dict(data)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "options":
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=1e-5)")
    key, text = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    if isinstance(value, (dict, list)) and _is_text(_leaf_hint(key)):
        value = text  # e.g. env.prompt_template="Q: {problem}": text, not a YAML mapping
    return key, value


def _leaf_hint(key: str) -> Any:
    """The declared type of a config key; None for an unknown key (reported later, where it is set)."""
    try:
        parts = resolve_key(key)
    except ConfigError:
        return None
    hint: Any = Config
    for part in parts:
        hints = typing.get_type_hints(hint) if dataclasses.is_dataclass(hint) else {}
        if part not in hints:
            return None
        hint = hints[part]
    return hint


def _is_text(hint: Any) -> bool:
    """`str` or `str | None`."""
    return hint is str or (typing.get_origin(hint) in (typing.Union, types.UnionType)
                           and set(typing.get_args(hint)) == {str, type(None)})


def resolve_key(key: str) -> list[str]:
    """A dotted key as a path; a bare leaf name that is unique among all keys (nested ones included) is
    expanded (`lr` -> `train.lr`; `path` is ambiguous: `model.path` or `env.pool.path`)."""
    parts = key.split(".")
    if len(parts) > 1 or key in TOP_KEYS:
        return parts
    owners = [k for k in _all_keys() if k.split(".")[-1] == key]
    if len(owners) == 1:
        return owners[0].split(".")
    if len(owners) > 1:
        raise ConfigError(f"key {key!r} is ambiguous: write one of {', '.join(owners)}")
    raise ConfigError(f"unknown key {key!r}{_suggest(key, _all_keys())}")


def set_key(data: dict[str, Any], key: str, value: Any) -> None:
    parts = resolve_key(key)
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _all_keys() -> list[str]:
    def fields(prefix: str, cls: type) -> list[str]:
        hints = typing.get_type_hints(cls)
        return [k for f in dataclasses.fields(cls)
                for k in (fields(f"{prefix}.{f.name}", hints[f.name]) if dataclasses.is_dataclass(hints[f.name])
                          else [f"{prefix}.{f.name}"])]

    keys = [f.name for f in dataclasses.fields(Config) if f.name not in _SECTION_TYPES]
    for section, cls in _SECTION_TYPES.items():
        keys += fields(section, cls)
    return keys


def _suggest(key: str, candidates: list[str]) -> str:
    leafs = {c.split(".")[-1]: c for c in candidates}
    hint = difflib.get_close_matches(key, candidates, n=1) or \
        [leafs[h] for h in difflib.get_close_matches(key.split(".")[-1], list(leafs), n=1)]
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def from_dict(data: dict[str, Any]) -> Config:
    """Build and validate; every problem is one `ConfigError` line."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
    top: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTION_TYPES:
            top[key] = _build_section(key, _SECTION_TYPES[key], value)
        elif key in ("name", "seed"):
            top[key] = _coerce(key, value, str if key == "name" else int)
        else:
            raise ConfigError(f"unknown key {key!r}{_suggest(key, _all_keys())}")
    config = Config(**top)
    if config.env.pool.path is not None:  # absolute, so a resumed run finds the file from any directory
        config.env.pool.path = os.path.abspath(os.path.expanduser(config.env.pool.path))
    validate(config)
    return config


def _build_section(section: str, cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if not isinstance(value, dict):
        raise ConfigError(f"{section} must be a mapping of keys, got {value!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, item in value.items():
        if key not in hints:
            raise ConfigError(f"unknown key '{section}.{key}'{_suggest(f'{section}.{key}', _all_keys())}")
        kwargs[key] = _coerce(f"{section}.{key}", item, hints[key])
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """`value` as the annotated type; ints become floats where a float is expected, '3e-5' parses as float."""
    if dataclasses.is_dataclass(hint):  # a nested section (env.pool)
        return _build_section(name, hint, value)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            if arg is int and isinstance(value, float):
                continue  # int | float: keep floats as floats
            try:
                return _coerce(name, value, arg)
            except ConfigError:
                pass
        names = " or ".join(getattr(a, "__name__", str(a)).replace("NoneType", "null") for a in args)
        raise ConfigError(f"{name}: expected {names}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(value, bool) != (hint is bool):
        pass  # bools are only bools, never numbers
    elif hint in (bool, str) and isinstance(value, hint):
        return value
    elif hint is int and (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        return int(value)
    elif hint is float and isinstance(value, (int, float)):
        return float(value)
    elif hint is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if hint in _EXPECTED:
        raise ConfigError(f"{name}: expected {_EXPECTED[hint]}, got {value!r}")
    return value


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


# key -> allowed range: ">=N", ">N", or an interval such as "(0,1]"
RANGES: dict[str, str] = {
    "seed": ">=0", "model.num_threads": ">=1", "model.vllm_gpu_memory_utilization": "(0,1]",
    "env.source_seed": ">=0", "rollout.group_size": ">=2", "rollout.prompts_per_step": ">=1",
    "rollout.temperature": ">0",
    "rollout.top_p": "(0,1]", "rollout.max_new_tokens": ">=1", "train.steps": ">=1", "train.lr": "(0,1)",
    "train.warmup_steps": ">=0", "train.min_lr_ratio": "[0,1]", "train.weight_decay": ">=0",
    "train.grad_clip": ">=0", "train.clip_epsilon": "(0,1)", "train.kl_coef": ">=0", "train.entropy_coef": ">=0",
    "eval.every": ">=0", "eval.n_per_level": ">=1", "eval.samples": ">=1", "eval.temperature": ">0",
    "eval.batch_size": ">=1", "output.checkpoint_every": ">=1", "output.keep_checkpoints": ">=1",
}


def _in_range(value: float, rule: str) -> bool:
    if rule[0] == ">":
        return value >= float(rule[2:]) if rule[1] == "=" else value > float(rule[1:])
    low, high = (float(x) for x in rule[1:-1].split(","))
    return (low <= value if rule[0] == "[" else low < value) and (value <= high if rule[-1] == "]" else value < high)


def _get(config: Config, key: str) -> Any:
    return functools.reduce(getattr, key.split("."), config)


def validate(config: Config) -> None:
    """Choice and range checks, plus the schedule options (built once by `curricula.make_schedule`)."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    for key, choices in CHOICES.items():
        value = _get(config, key)
        need(value in choices, f"{key}: must be one of {', '.join(choices)}, got {value!r}")
    for key, rule in RANGES.items():
        value = _get(config, key)
        shown = rule.replace(",", ", ") if rule[0] in "([" else f"{rule.rstrip('0123456789.')} {rule.lstrip('>=')}"
        need(_in_range(value, rule), f"{key}: must be {'in ' if rule[0] in '([' else ''}{shown}, got {value!r}")
    m, e, r, t = config.model, config.env, config.rollout, config.train
    need(len(t.adam_betas) == 2 and all(0 <= b < 1 for b in t.adam_betas),
         f"train.adam_betas: must be two numbers in [0, 1), got {t.adam_betas}")
    need(config.eval.max_new_tokens is None or config.eval.max_new_tokens >= 1,
         "eval.max_new_tokens: must be >= 1 or null")
    need(t.micro_batch is None or t.micro_batch >= 1, f"train.micro_batch: must be >= 1 or null, got {t.micro_batch}")
    need(m.dtype != "float16", "model.dtype: float16 training needs loss scaling, which the learner does not do; "
         "use bfloat16 (the CUDA default) or float32")
    need(m.device in ("auto", "cpu") or m.device.startswith("cuda"),
         f"model.device: must be auto, cpu, cuda or cuda:N, got {m.device!r}")
    need(m.backend != "vllm" or m.device != "cpu", "model.backend: vllm needs a GPU (model.device cpu given)")
    need(m.path == TINY_MODEL or is_hub_id(m.path) or Path(m.path).expanduser().exists(),
         f"model.path: {m.path} does not exist; give tiny, a model directory or a hub id such as Qwen/Qwen2.5-0.5B")
    from cuma_env.catalog import TASKS

    need(e.id.split(":")[-1] in TASKS, f"env.id: unknown environment {e.id!r}; known: {', '.join(TASKS)}")
    task = TASKS[e.id.split(":")[-1]]
    trainable = [name for name, t in TASKS.items() if "train" in t.datasets]
    need("train" in task.datasets, f"env.id: {task.env_id} is evaluation only (no train split); train on one of "
         f"{', '.join(trainable)} and evaluate with `cuma eval --bench`")
    need(e.levels is None or (len(e.levels) > 0 and all(lv in (1, 2, 3, 4, 5) for lv in e.levels)),
         f"env.levels: must be a non-empty list of levels 1..5 or null, got {e.levels!r}")
    need(e.levels is None or task.levelled, f"env.levels: {task.env_id} has no difficulty levels; drop env.levels")
    if isinstance(e.min_votes, int):
        need(1 <= e.min_votes <= r.group_size, f"env.min_votes: a count must be in 1..group_size, got {e.min_votes}")
    else:
        need(0 < e.min_votes <= 1, f"env.min_votes: a share must be in (0, 1], got {e.min_votes}")
    _validate_pool(e, need)
    from curricula import make_schedule

    try:
        make_schedule(config.curriculum.schedule, **config.curriculum.options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"curriculum: {' '.join(str(exc).split())}") from None


def _validate_pool(e: EnvConfig, need) -> None:
    """`env.pool`: each key only where its kind reads it; a file pool's file must exist (checked at load)."""
    p = e.pool
    need(p.kind == "file" or p.path is None, f"env.pool.path: only kind file reads a path (kind is {p.kind!r})")
    need(p.kind == "skewed" or p.size is None, f"env.pool.size: only kind skewed reads a size (kind is {p.kind!r})")
    need(p.kind == "file" or p.top_up is False,
         f"env.pool.top_up: only kind file is topped up (kind is {p.kind!r})")
    need(p.size is None or p.size >= 1, f"env.pool.size: must be >= 1 or null, got {p.size!r}")
    need(isinstance(p.top_up, bool) or (len(p.top_up) > 0 and all(lv in (1, 2, 3, 4, 5) for lv in p.top_up)),
         f"env.pool.top_up: must be true, false or a non-empty list of levels 1..5, got {p.top_up!r}")
    need(bool(p.level_field), "env.pool.level_field: must be a field name, got an empty string")
    if p.kind == "skewed":
        from cuma_env.catalog import get_task

        need(get_task(e.id).levelled, f"env.pool.kind: skewed needs a levelled env, {e.id} has no levels")
    if p.kind == "file":
        need(p.path is not None, "env.pool.path: kind file needs a path to a curated JSONL (env.pool.path=FILE)")
        need(Path(p.path).is_file(), f"env.pool.path: file not found: {p.path}")


def diff_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    flat = lambda c: {f"{k}.{i}" if isinstance(v, dict) else k: x  # noqa: E731
                      for k, v in c.to_dict().items() for i, x in (v.items() if isinstance(v, dict) else [(k, v)])}
    a, b = flat(old), flat(new)
    return [k for k in a if a[k] != b.get(k)]
