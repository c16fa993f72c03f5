"""A held-out evaluation computed once and reused: the start evaluation of a study world's trained cells.

Every trained cell of a `cuma study` world starts from the world's base, so its trainer's evaluation before the
first step (greedy and seeded samples on the held-out set) is the same for every arm with that seed and those
evaluation settings. The study computes it once per (world, seed) and reuses it in the other arms' cells:

    with reusing_start_evaluations(out / "start-evaluations"):
        run_method(...)   # the trainer's step-0 `evaluate_heldout`: looked up, or computed and stored

While the block is active, the first held-out evaluation of each model object (a trainer's, before its first
step) is keyed by a sha256 of everything it reads: the weights, the tokenizer, the model's generation config,
the problems (level, id, prompt, reference), the template, the evaluation settings (seed included), backend,
dtype, device, torch's threads and the torch and transformers versions. A hit returns the stored result as it
was computed (levels, collapse, per-problem answers), with `seconds` the lookup's and `reused: True`; a miss
computes and stores it (atomically: parallel cells may both compute a key, and either file is the same).
The digest of the weights makes a wrong hit impossible short of a sha256 collision: a resumed run's first
evaluation (other weights) is a miss. Evaluation never changes the training run's random stream
(`agents.evaluation`), so a run that reuses its start evaluation trains as one that computed it
(tests/test_cell_reuse.py); what it saves: docs/performance.md ("Study cells").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

FORMAT = 1
_state: dict[str, Any] = {"directory": None}
_evaluated: weakref.WeakSet = weakref.WeakSet()  # models evaluated while reuse was active: no longer at the start


@contextlib.contextmanager
def reusing_start_evaluations(directory: str | Path) -> Iterator[Path]:
    """Within the block, models' first held-out evaluations are reused from `directory` (or stored there)."""
    previous = _state["directory"]
    _state["directory"] = Path(directory)
    try:
        yield _state["directory"]
    finally:
        _state["directory"] = previous


def reused_or_computed(policy: Any, problems: Mapping[Any, Sequence[Any]], template: str,
                       settings: Mapping[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`compute()`, unless reuse is active and this is the model's first evaluation: then the stored result of
    the same evaluation, or `compute()` stored for the next cell."""
    directory = _state["directory"]
    if directory is None or policy.model in _evaluated:
        return compute()
    _evaluated.add(policy.model)
    start = time.perf_counter()
    material = evaluation_material(policy, problems, template, settings)
    path = directory / f"{hashlib.sha256(_dumps(material).encode()).hexdigest()[:40]}.json"
    saved = _read(path)
    if saved is not None and saved.get("material") == material:
        result = decode(saved["result"])
        result.update(seconds=time.perf_counter() - start, reused=True)
        return result
    result = compute()
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"material": material, "result": encode(result)}))  # in order: levels stay in theirs
    os.replace(tmp, path)
    return result


def evaluation_material(policy: Any, problems: Mapping[Any, Sequence[Any]], template: str,
                        settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything an evaluation's numbers depend on, as JSON (the weights, tokenizer and problems as digests)."""
    import torch
    import transformers

    from agents.tiny.model import weights_hash
    from cuma_env.prompting import format_prompt

    rows = [[level, p.id, format_prompt(p, template), p.answer] for level, items in problems.items() for p in items]
    generation = getattr(policy.model, "generation_config", None)
    return {"format": FORMAT, "weights": weights_hash(policy.model), "tokenizer": tokenizer_digest(policy.tokenizer),
            "generation_config": generation.to_json_string() if generation is not None else None,
            "problems": _digest(_dumps(rows)), "template": template, "settings": dict(settings),
            "policy": {"backend": policy.backend, "dtype": str(policy.dtype), "device": str(policy.device)},
            "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def tokenizer_digest(tokenizer: Any) -> str:
    """sha256 of what renders and encodes a prompt: the tokenizer's model (vocabulary, merges, normalisation),
    its chat template and special tokens, and its name (TorchRL picks some model families' chat templates by
    it: `agents.policy.render_prompts`)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else _dumps(sorted(tokenizer.get_vocab().items()))
    return _digest(_dumps([type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), vocab,
                           getattr(tokenizer, "chat_template", None),
                           sorted(map(str, getattr(tokenizer, "all_special_tokens", [])))]))


def encode(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result as JSON keeps it: levels as [level, stats] pairs, so integer levels stay integers."""
    return {**result, "levels": [[level, stats] for level, stats in result["levels"].items()]}


def decode(saved: Mapping[str, Any]) -> dict[str, Any]:
    return {**saved, "levels": {level: stats for level, stats in saved["levels"]}}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or cut short: computed again
        return None


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["reused_or_computed", "reusing_start_evaluations", "tokenizer_digest"]
