"""Arms of your own for `cuma study --arms-file FILE`: each a `cuma reproduce` method plus overrides, exactly as
the shipped arms are (`agents.experiments.study_arms`), so a new recipe is tested by the same grid, analysis and
report without editing the package.

    arms:
      - name: mine                  # a directory name: letters, digits, `_` and `-`; not a shipped arm's
        method: cuma_gated          # a `cuma reproduce` method (agents/experiments/arms.py)
        overrides: [curriculum.schedule=uniform, train.lr=3e-5]   # optional: config `key=value`s
        votes: never                # optional: one | never | - (how the unanswered vote; default never)
        design_only: false          # optional: run in the design world only
        description: the gated mask with levels uniform
    contrasts:                      # optional: pairs to decide, as the shipped contrasts
      - {a: mine, b: cuma_gated, why: what the curriculum adds, hypothesis: H7}

A bad file is one `ArmsFileError` line naming the file, the entry and the fix.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from agents.experiments.study_arms import ArmTable, Contrast, StudyArm

ARM_KEYS = ("name", "method", "overrides", "votes", "design_only", "description")
CONTRAST_KEYS = ("a", "b", "why", "hypothesis")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ArmsFileError(ValueError):
    """An arms file that cannot be used, with what to fix (one line)."""


def _keys(entry: Any, known: tuple[str, ...], where: str, required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ArmsFileError(f"{where}: expected a mapping with {', '.join(required)}, got {entry!r}")
    for key in entry:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise ArmsFileError(f"{where}: unknown key {key!r}{hint}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ArmsFileError(f"{where}: missing {missing[0]!r}")
    return entry


def _text(entry: dict[str, Any], key: str, where: str, default: str = "") -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise ArmsFileError(f"{where}: {key} must be a string, got {value!r}")
    return value


def parse_arm(entry: Any, where: str) -> StudyArm:
    entry = _keys(entry, ARM_KEYS, where, ("name", "method"))
    name = entry["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ArmsFileError(f"{where}: name must be letters, digits, '_' or '-' (it names a directory), got {name!r}")
    where = f"{where} {name!r}"
    overrides = entry.get("overrides") or []
    if isinstance(overrides, str):
        overrides = [overrides]
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise ArmsFileError(f"{where}: overrides must be a list of 'key=value' strings, got {overrides!r}")
    design_only = entry.get("design_only", False)
    if not isinstance(design_only, bool):
        raise ArmsFileError(f"{where}: design_only must be true or false, got {design_only!r}")
    return StudyArm(name, _text(entry, "method", where), tuple(overrides), _text(entry, "votes", where, "never"),
                    design_only, _text(entry, "description", where))


def parse_contrast(entry: Any, where: str) -> Contrast:
    entry = _keys(entry, CONTRAST_KEYS, where, ("a", "b"))
    return Contrast(*(_text(entry, key, where) for key in CONTRAST_KEYS))


def parse_arms_file(data: Any, source: str = "arms file") -> ArmTable:
    """The `ArmTable` of a loaded file: the shipped arms plus the file's, and its contrasts."""
    if not isinstance(data, dict) or "arms" not in data:
        raise ArmsFileError(f"{source}: expected a mapping with a list 'arms' (and optionally 'contrasts')")
    extra = sorted(set(data) - {"arms", "contrasts"})
    if extra:
        raise ArmsFileError(f"{source}: unknown key {extra[0]!r}; an arms file has 'arms' and 'contrasts'")
    arms, contrasts = data["arms"], data.get("contrasts") or []
    if not isinstance(arms, list) or (not arms and not contrasts):
        raise ArmsFileError(f"{source}: 'arms' must be a list of arms (empty only when the file adds contrasts)")
    if not isinstance(contrasts, list):
        raise ArmsFileError(f"{source}: 'contrasts' must be a list of {{a, b, why, hypothesis}}")
    parsed = tuple(parse_arm(entry, f"{source}: arm {i + 1}") for i, entry in enumerate(arms))
    named = tuple(parse_contrast(entry, f"{source}: contrast {i + 1}") for i, entry in enumerate(contrasts))
    try:
        return ArmTable(parsed, named)
    except ValueError as exc:
        raise ArmsFileError(f"{source}: {exc}") from None


def load_arms_file(path: str | Path) -> ArmTable:
    """The arms of a YAML or JSON file, joined to the shipped ones."""
    from agents.experiments.worlds import read_yaml_file

    path = Path(path)
    return parse_arms_file(read_yaml_file(path, "arms file", ArmsFileError), str(path))


__all__ = ["ARM_KEYS", "CONTRAST_KEYS", "ArmsFileError", "load_arms_file", "parse_arms_file"]
