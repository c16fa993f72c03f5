"""Training configuration: YAML presets, `key=value` overrides, loading and checking a `Config`.

    config = load_config(preset="tiny-cuma-gated", overrides=["train.lr=1e-5", "steps=50"])
    config = load_config(path="my.yaml")                   # a YAML file in the same layout as a preset
    config.to_dict(); save_config(config, "run/config.yaml")

A YAML file (or preset) may name a `preset:` to start from and change only some keys. Overrides use dotted
keys (`train.lr=1e-5`) or a leaf name that is unique across sections (`lr=1e-5`); values are parsed as
YAML (`env.levels=[1,2]`, `eval.every=0`). `curriculum.options` is a free mapping handed to
`curricula.make_schedule`, so `curriculum.options.window=16` works too; they are the preset's schedule's
kwargs, so a file or overrides that change `curriculum.schedule` without setting `curriculum.options` drop the
preset's (`load_config(notes=...)` says so). `env.pool` is a nested section
(`env.pool.kind=skewed`): which problems the run trains on (see `PoolConfig`, built by `agents.train_pool`).
Every problem (unknown key, wrong type, value out of range, unknown schedule option) is one `ConfigError`
whose message is one line. The sections and the checks of their keys live in `agents.config_sections`
(re-exported here); this module reads, merges, coerces and then calls `Config.validate`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.config_sections import (
    POOL_KINDS,
    TINY_MODEL,
    ConfigError,
    CurriculumConfig,
    EnvConfig,
    EvalConfig,
    ModelConfig,
    OutputConfig,
    PoolConfig,
    RayConfig,
    RolloutConfig,
    TrainConfig,
    at_least,
    is_hub_id,
    min_votes_count,
)

PRESET_DIR = Path(__file__).resolve().parent / "presets"
DEFAULT_PRESET = "tiny-cuma-gated"

__all__ = ["DEFAULT_PRESET", "POOL_KINDS", "RESUMABLE_KEYS", "TINY_MODEL", "Config", "ConfigError",
           "CurriculumConfig", "EnvConfig", "EvalConfig", "ModelConfig", "OutputConfig", "PoolConfig",
           "RayConfig", "RolloutConfig", "TrainConfig", "diff_keys", "drop_stale_options", "from_dict", "is_hub_id",
           "load_config", "preset_names", "preset_path", "read_yaml", "save_config"]


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
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, overrides: list[str] | dict[str, Any]) -> Config:
        data = self.to_dict()
        items = overrides.items() if isinstance(overrides, dict) else (parse_override(o) for o in overrides)
        for key, value in items:
            set_key(data, key, value)
        return from_dict(data)

    def validate(self) -> None:
        """Every section's own checks (`agents.config_sections`), then the ones that span sections."""
        at_least("seed", self.seed, 0)
        for section in (self.model, self.env, self.curriculum, self.rollout, self.train, self.eval, self.output,
                        self.ray):
            section.validate()
        self.eval.check_split(self.env.id)
        voted = self.rollout.vote_group_size or self.rollout.group_size  # the group the vote counts in
        min_votes_count("env.min_votes", self.env.min_votes, voted,
                        "rollout.vote_group_size" if self.rollout.vote_group_size else "rollout.group_size",
                        within_group=True)  # a count above the group would mask every group
        if self.model.lora_rank and self.model.backend == "vllm" and self.rollout.workers > 1:
            raise ConfigError("model.lora_rank with vLLM engines on Ray workers is not supported: their weight "
                              "broadcast sends the learner's parameters by name, adapters unmerged; use "
                              "rollout.workers=1 (the in-process engine gets merged weights) or the transformers "
                              "backend")
        if self.rollout.compact_decode and self.model.backend == "vllm":
            raise ConfigError("rollout.compact_decode is for the transformers backend; vLLM already drops finished "
                              "sequences from its batches (set rollout.compact_decode=false)")


TOP_KEYS = frozenset(f.name for f in dataclasses.fields(Config))
_SECTION_TYPES = {"model": ModelConfig, "env": EnvConfig, "curriculum": CurriculumConfig, "rollout": RolloutConfig,
                  "train": TrainConfig, "eval": EvalConfig, "output": OutputConfig, "ray": RayConfig}
# keys that may change when a run is resumed: how long it runs, how it is evaluated, saved and shown.
# Only `train.steps` changes a step's numbers: it is also the horizon of the warm-up + cosine lr schedule, so a
# run resumed with more steps follows the longer schedule from its current step on (from there its lr, and
# so its weights, differ from the original run's; they equal a fresh run of the new length only up to the
# first step whose lr differs). `Trainer.resume` refuses fewer steps than the checkpoint has already run.
# `train.max_samples` only moves where the run stops, like `train.steps` without changing the lr schedule.
RESUMABLE_KEYS = frozenset({"train.steps", "train.max_samples", "eval.every", "output.checkpoint_every",
                            "output.keep_checkpoints", "output.tensorboard", "output.progress", "eval.batch_size",
                            "ray.address"})


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        hint = difflib.get_close_matches(name, preset_names(), n=1)
        raise ConfigError(f"unknown preset {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; presets: {', '.join(preset_names())}")
    return path


def read_yaml(path: str | Path, _seen: tuple[str, ...] = (), notes: list[str] | None = None) -> dict[str, Any]:
    """A YAML config as a plain dict, with its `preset:` base (if any) merged underneath (see
    `drop_stale_options`: a base's `curriculum.options` do not follow a schedule the file changes)."""
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
    if base is None:
        return data
    under = read_yaml(preset_path(base), (*_seen, base), notes)
    merged = deep_merge(under, data)
    note = drop_stale_options(_schedule_of(under), merged, None if "options" in _curriculum(data) else ())
    if note and notes is not None:
        notes.append(f"{path.name}: {note}")
    return merged


def load_config(preset: str | None = None, path: str | Path | None = None,
                overrides: list[str] | None = None, notes: list[str] | None = None) -> Config:
    """A validated `Config` from a preset name or a YAML file (default: the default preset) plus overrides.

    `notes`, if given, receives one line per thing the caller may not expect (the preset's `curriculum.options`
    dropped because the schedule changed: `drop_stale_options`); `cuma train` prints them.
    """
    if preset is not None and path is not None:
        raise ConfigError("give a preset or a config file, not both")
    if path is not None:
        data = read_yaml(path, notes=notes)
    else:
        data = read_yaml(preset_path(preset or DEFAULT_PRESET), notes=notes)
        data.setdefault("name", preset or DEFAULT_PRESET)
    schedule, set_options = _schedule_of(data), set()  # option keys the overrides set (None: all of them)
    for item in overrides or []:
        key, value = parse_override(item)
        set_key(data, key, value)
        parts = resolve_key(key)
        if parts in (["curriculum"], ["curriculum", "options"]):
            set_options = None
        elif parts[:2] == ["curriculum", "options"] and set_options is not None:
            set_options.add(parts[2])
    note = drop_stale_options(schedule, data, set_options)
    if note and notes is not None:
        notes.append(note)
    return from_dict(data)


def _curriculum(data: dict[str, Any]) -> dict[str, Any]:
    section = data.get("curriculum")
    return section if isinstance(section, dict) else {}


def _schedule_of(data: dict[str, Any]) -> Any:
    return _curriculum(data).get("schedule", CurriculumConfig.schedule)


def _same_schedule(a: Any, b: Any) -> bool:
    """Names compared as `make_schedule` reads built-in ones (`Agreement-Gated` is `agreement_gated`)."""
    return str(a).strip().lower().replace("-", "_") == str(b).strip().lower().replace("-", "_")


def drop_stale_options(schedule: Any, data: dict[str, Any], kept: Collection[str] | None = ()) -> str | None:
    """Drop `data`'s `curriculum.options` but the `kept` keys if its schedule is no longer `schedule` (the
    preset's or base file's): those options are the old schedule's kwargs, and `curriculum.schedule=my_sched:FirstTwo`
    alone should not hand `window=32` to `FirstTwo`. `kept` are the option keys the change set itself; None: it
    set the options as a whole (nothing to drop). Returns a note naming what was dropped, or None."""
    section = _curriculum(data)
    new, options = section.get("schedule", CurriculumConfig.schedule), section.get("options")
    if kept is None or _same_schedule(new, schedule) or not isinstance(options, dict):
        return None
    dropped = [k for k in options if k not in kept]
    if not dropped:
        return None
    section["options"] = {k: v for k, v in options.items() if k in kept}
    keys = ", ".join(map(str, dropped[:3])) + (", ..." if len(dropped) > 3 else "")
    return (f"curriculum.schedule={new} replaces {schedule}: {schedule}'s curriculum.options ({keys}) are "
            f"dropped; set curriculum.options to give {new}'s")


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
    config.validate()
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


def diff_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    flat = lambda c: {f"{k}.{i}" if isinstance(v, dict) else k: x  # noqa: E731
                      for k, v in c.to_dict().items() for i, x in (v.items() if isinstance(v, dict) else [(k, v)])}
    a, b = flat(old), flat(new)
    return [k for k in a if a[k] != b.get(k)]
