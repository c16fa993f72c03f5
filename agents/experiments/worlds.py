"""Worlds of `cuma study`: one world is one tiny-base configuration (corpus shares, warm-up steps, seed).

A world file (YAML or JSON) lists them, as a list or under `worlds:`:

    worlds:
      - name: design            # a directory name: letters, digits, `_` and `-`
        role: design            # design (the world the defaults were chosen in) | held_out
      - name: seed1
        role: held_out
        seed: 1                 # any TinyBaseConfig field; unset fields keep the default base's values
        seeds: 3                # optional: RL seeds per arm (default: 5 in the design world, 3 in held-out ones)
        read_before: false      # optional: a variant of this world was measured while the defaults were chosen
        description: the default corpus, base seed 1
      - name: smollm2
        role: held_out
        model: smollm2-135m     # a world that is a pretrained model (a packaged name, a directory or a hub id):
        presets: smollm2        # its arms train from the `smollm2-*` presets instead of `tiny-*`

A file written by `cuma study --worlds sampled:N --write-worlds FILE` (`agents.experiments.world_sampler`) adds
a top-level `drawn:` record (the distribution, its replacement rule, the draws it replaced and why) and a
`drawn:` entry per world (its draw index, the distribution, the base's measured numbers); both are records, read
back as they are (docs/worlds.md).

A tiny world's base is built and cached by the same code as `cuma base` (`agents.tiny.cache.ensure_tiny_base`):
the default configuration installs the published weights, any other trains on first use (minutes).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from agents.tiny.config import TinyBaseConfig

ROLES = ("design", "held_out")
DEFAULT_SEEDS = {"design": 5, "held_out": 3}
WORLD_KEYS = ("name", "role", "seeds", "read_before", "description", "model", "presets", "drawn")
TINY_FAMILY = "tiny"
BASE_KEYS = tuple(f.name for f in fields(TinyBaseConfig))
SHIPPED = Path(__file__).parent / "study_worlds" / "default.yaml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class WorldError(ValueError):
    """A world file that cannot be used, with what to fix (one line)."""


@dataclass(frozen=True)
class World:
    name: str
    role: str
    base: dict[str, Any] = field(default_factory=dict)  # TinyBaseConfig fields that differ from the default's
    seeds: int = 3
    read_before: bool = False
    description: str = ""
    model: str | None = None        # a pretrained model instead of a tiny base (its arms use `presets`)
    presets: str = TINY_FAMILY      # the preset family the arms train from: `<presets>-cuma-gated`, ...
    drawn: dict[str, Any] | None = None  # a drawn world: its draw index, distribution and check (world_sampler)

    def base_config(self) -> TinyBaseConfig:
        return TinyBaseConfig.from_dict(self.base) if self.base else TinyBaseConfig()

    @property
    def is_default_base(self) -> bool:
        """The published default base (installed from its weights, `model.path: tiny`)."""
        return self.model is None and self.base_config() == TinyBaseConfig()

    @property
    def base_key(self) -> str:
        """What the world's arms start from, as cell specs record it."""
        return f"model:{self.model}" if self.model else self.base_config().key()

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "role": self.role, "seeds": self.seeds, "read_before": self.read_before,
                "description": self.description, "base": dict(self.base), "base_key": self.base_key}
        if self.model:
            data.update(model=self.model, presets=self.presets)
        if self.drawn is not None:
            data["drawn"] = dict(self.drawn)
        return data


def parse_world(entry: Any, where: str = "world") -> World:
    """One entry of a world file; a `WorldError` naming the entry and the fix."""
    if not isinstance(entry, dict):
        raise WorldError(f"{where}: expected a mapping with name, role and TinyBaseConfig fields, got {entry!r}")
    name = entry.get("name")
    where = f"{where} {name!r}" if isinstance(name, str) else where
    unknown = [k for k in entry if k not in WORLD_KEYS + BASE_KEYS]
    if unknown:
        key = str(unknown[0])
        close = difflib.get_close_matches(key, WORLD_KEYS + BASE_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(WORLD_KEYS + BASE_KEYS)}"
        raise WorldError(f"{where}: unknown key {key!r}{hint}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise WorldError(f"{where}: name must be letters, digits, '_' or '-' (it names a directory), got {name!r}")
    role = entry.get("role")
    if role not in ROLES:
        close = difflib.get_close_matches(str(role), ROLES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise WorldError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}{hint}")
    seeds = entry.get("seeds", DEFAULT_SEEDS[role])
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise WorldError(f"{where}: seeds must be a positive int (RL seeds per arm), got {seeds!r}")
    read_before = entry.get("read_before", False)
    if not isinstance(read_before, bool):
        raise WorldError(f"{where}: read_before must be true or false, got {read_before!r}")
    base = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in entry.items() if k in BASE_KEYS}
    model, presets = entry.get("model"), entry.get("presets")
    if model is not None and (not isinstance(model, str) or not model.strip() or base):
        raise WorldError(f"{where}: model must be a model name, directory or hub id, and a model world takes no "
                         f"tiny-base fields (got model={model!r}, base fields {sorted(base)})")
    if presets is not None and (model is None or not isinstance(presets, str) or not _NAME.match(presets)):
        raise WorldError(f"{where}: presets (a preset family such as smollm2) goes with model, got {presets!r}")
    if model is not None and presets is None:
        from agents.packaged_models import PACKAGED_MODELS

        presets = PACKAGED_MODELS[model].presets if model in PACKAGED_MODELS else None
        if presets is None:
            raise WorldError(f"{where}: say which presets its arms train from (presets: smollm2 uses the "
                             "smollm2-* presets with model.path replaced)")
    drawn = entry.get("drawn")
    if drawn is not None and (not isinstance(drawn, dict) or not isinstance(drawn.get("index"), int)
                              or isinstance(drawn.get("index"), bool) or drawn["index"] < 1
                              or not isinstance(drawn.get("distribution"), str) or model is not None):
        raise WorldError(f"{where}: drawn records a tiny world's draw: a mapping with index (>= 1) and "
                         f"distribution (its file), got {drawn!r}")
    world = World(name, role, base, seeds, read_before, str(entry.get("description", "")), model,
                  presets or TINY_FAMILY, drawn)
    try:
        world.base_config()
    except (TypeError, ValueError) as exc:
        raise WorldError(f"{where}: {' '.join(str(exc).split())}") from exc
    return world


def parse_worlds(data: Any, source: str = "worlds") -> list[World]:
    """The worlds of a loaded file: unique names, at most one design world."""
    return parse_world_file(data, source)[0]


def parse_world_file(data: Any, source: str = "worlds") -> tuple[list[World], dict[str, Any] | None]:
    """(worlds, the file's `drawn` record or None): `parse_worlds`, keeping a drawn file's record."""
    drawn = None
    if isinstance(data, dict) and "worlds" in data and set(data) <= {"worlds", "drawn"}:
        drawn = data.get("drawn")
        if "drawn" in data and not isinstance(drawn, dict):
            raise WorldError(f"{source}: drawn is the record of a drawn world file (a mapping), got {drawn!r}")
        data = data["worlds"]
    elif isinstance(data, dict):
        extra = sorted(set(data) - {"worlds", "drawn"})
        raise WorldError(f"{source}: expected a list of worlds or the key 'worlds' (and a drawn file's 'drawn'), "
                         f"found {extra or sorted(data)}")
    if not isinstance(data, list) or not data:
        raise WorldError(f"{source}: expected a non-empty list of worlds")
    worlds = [parse_world(entry, f"{source}: world {i + 1}") for i, entry in enumerate(data)]
    names = [w.name for w in worlds]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WorldError(f"{source}: world names must be unique; repeated: {', '.join(dupes)}")
    if sum(w.role == "design" for w in worlds) > 1:
        raise WorldError(f"{source}: at most one world has role 'design' (the one the defaults were chosen in)")
    return worlds, drawn


def load_worlds(path: str | Path | None = None) -> list[World]:
    """The worlds of a YAML or JSON file (default: the shipped one, `agents/experiments/study_worlds/default.yaml`)."""
    return load_world_file(path)[0]


def load_world_file(path: str | Path | None = None) -> tuple[list[World], dict[str, Any] | None]:
    """(worlds, the `drawn` record of a file written from a distribution, else None) of a world file."""
    path = Path(path) if path is not None else SHIPPED
    return parse_world_file(read_yaml_file(path, "world file", WorldError), str(path))


def read_yaml_file(path: Path, what: str, error: type[Exception]) -> Any:
    """A study input file's data (YAML, or JSON, which is YAML); an `error` line naming it when it cannot be read."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML or JSON: {' '.join(str(exc).split())}") from None


def model_path(world: World, *, build: bool = True, progress: bool = True) -> str:
    """`model.path` of the world's base: `tiny` for the published default (the path every preset names), the
    world's model (installed first when `build` and packaged), else its cache directory, trained first when
    `build` and not cached yet."""
    if world.model:
        if build:
            from agents.policy import model_source

            model_source(world.model)  # a packaged model installs once here, before parallel cells
        return world.model
    if world.is_default_base:
        return "tiny"
    from agents.tiny.cache import base_path, ensure_tiny_base

    config = world.base_config()
    return str(ensure_tiny_base(config, progress=progress) if build else base_path(config))


def base_info(world: World) -> dict[str, Any]:
    """Which base the world's arms start from: its cache path, weights hash and source (published / trained)."""
    from agents.tiny.cache import base_path, is_built, read_metadata

    if world.model:
        return {"path": world.model, "model": True, "presets": world.presets}
    path = base_path(world.base_config())
    if not is_built(path):
        return {"path": str(path), "built": False}
    meta = read_metadata(path)
    return {"path": str(path), "built": True, "weights_sha256": meta.get("weights_sha256"),
            "source": meta.get("source", "trained")}


__all__ = ["BASE_KEYS", "DEFAULT_SEEDS", "ROLES", "SHIPPED", "World", "WorldError", "base_info", "load_world_file",
           "load_worlds", "model_path", "parse_world", "parse_world_file", "parse_worlds", "read_yaml_file"]
