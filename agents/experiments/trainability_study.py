"""Did the trainability diagnostic rank a finished study's worlds as their label-free gains rank them?

    result = study_trainability("docs/results/study", n_per_level=16)   # profiles each world's base
    print(format_study_trainability(result))                            # `cuma base --study DIR` does both

For each world of the study (study.json), its base is profiled on the validation split (the study measures its
gains on test, so the labelled predictor reads no label of the split it predicts) the way the recipe arm
trains it: the arm's cell config gives the mask, group size, temperature, token budget, prompt template,
answer rule and levels. `agents.experiments.trainability.diagnose` turns the profile into the two predictions;
the measured gain is the study's own estimate of `<arm> - base` in that world. Over worlds: Spearman's rho,
its Fisher-z interval and the exact permutation p (`rank_correlation`, `permutation_p`), for all the worlds and
for the held-out ones.

A tiny world's base comes from the cache (`$CUMA_CACHE_DIR` or ~/.cache/cuma); one not built there is
skipped unless `build=True` trains it (minutes each, and on another CPU other weights: the result says
whether each profiled base has the weights the study trained from).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.experiments.trainability import diagnose, permutation_p, rank_correlation

ARMS = ("cuma_gated", "cuma")  # the gated recipe (6-of-8 mask) and paper CuMa (2-vote mask)
BASELINE = "base"
VOTING_REWARDS = {"masked_majority", "majority"}


class StudyDirError(ValueError):
    """A study directory that cannot be diagnosed, with what to fix (one line)."""


def read_study(study_dir: str | Path) -> dict[str, Any]:
    path = Path(study_dir) / "study.json"
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise StudyDirError(f"cannot read {path}: {exc.strerror or exc} (give a finished study's directory)") from None
    except json.JSONDecodeError as exc:
        raise StudyDirError(f"{path} is not JSON: {exc}") from None


def recipe(study_dir: str | Path, world: str, arm: str) -> dict[str, Any] | None:
    """How `arm` trained in `world`, from its first seed's cell config; None when the study has no such cell."""
    cells = sorted((Path(study_dir) / "cells" / world).glob(f"{arm}-s*/cell.json"))
    if not cells:
        return None
    config = json.loads(cells[0].read_text())["config"]
    env, rollout = config["env"], config["rollout"]
    if env.get("reward") not in VOTING_REWARDS:
        raise StudyDirError(f"arm {arm} is rewarded by {env.get('reward')!r}, not by a vote: the diagnostic "
                            f"predicts a voting arm's gain ({', '.join(ARMS)})")
    return {"mask": env["min_votes"] if env["reward"] == "masked_majority" else 1,
            "samples": rollout["group_size"], "temperature": rollout["temperature"],
            "max_new_tokens": rollout["max_new_tokens"], "template": env.get("prompt_template"),
            "fallback": env.get("last_number_fallback", True),  # a spec drops this key at its default, True
            "levels": env.get("levels"), "model_path": config["model"]["path"]}


def measured_gain(study: dict[str, Any], world: str, arm: str, baseline: str = BASELINE) -> float | None:
    """The study's estimate of `arm - baseline` in `world` (the mean-over-levels greedy difference)."""
    analysed = study["analysis"]["worlds"].get(world, {})
    contrast = analysed.get("contrasts", {}).get(f"{arm} - {baseline}")
    if contrast is not None:
        return float(contrast["estimate"])
    arms = analysed.get("arms", {})
    if arm in arms and baseline in arms:
        return float(arms[arm]["mean"] - arms[baseline]["mean"])
    return None


def study_trainability(study_dir: str | Path, *, arms: Sequence[str] = ARMS, baseline: str = BASELINE,
                       n_per_level: int = 16, split: str = "validation", build: bool = False, seed: int = 0,
                       threads: int = 1, cache_dir: str | Path | None = None,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Each world's diagnostic per arm, its measured gain and, per arm, the rank correlations over worlds."""
    import time

    from agents.experiments.worlds import World

    if split == "test":
        raise StudyDirError("the study measured its gains on test: profile the bases on validation (or train)")
    study = read_study(study_dir)
    started = time.perf_counter()
    worlds, skipped = {}, {}
    for entry in study["plan"]["worlds"]:
        world = World(entry["name"], entry["role"], dict(entry.get("base", {})), entry.get("seeds", 3),
                      entry.get("read_before", False), entry.get("description", ""), entry.get("model"),
                      entry.get("presets", "tiny"))
        recipes = {arm: recipe(study_dir, world.name, arm) for arm in arms}
        recipes = {arm: r for arm, r in recipes.items() if r is not None}
        if not recipes:
            skipped[world.name] = f"no cell of {', '.join(arms)}"
            continue
        found = _base(world, study.get("bases", {}).get(world.name, {}), build, cache_dir, log)
        if isinstance(found, str):
            skipped[world.name] = found
            continue
        path, same = found
        log(f"[trainability] world {world.name}: profiling {path} ({split}, {n_per_level} per level) ...")
        entry = {"role": world.role, "read_before": world.read_before, "base": str(path), "same_weights": same,
                 "arms": {}}
        profiles: dict[tuple, Any] = {}  # arms trained with the same sampling share one profile
        for arm, how in recipes.items():
            key = tuple(str(how[k]) for k in ("samples", "temperature", "max_new_tokens", "template", "levels"))
            if key not in profiles:
                profiles[key] = _profile(world, path, how, n_per_level=n_per_level, split=split, seed=seed,
                                         threads=threads)
            profile = profiles[key]
            d = diagnose(profile, mask=how["mask"], rule="fallback" if how["fallback"] else "boxed")
            entry["arms"][arm] = {"mask_votes": d["mask_votes"], "samples": d["samples"],
                                  "prediction": d["prediction"], "prediction_label_free": d["prediction_label_free"],
                                  "gain": measured_gain(study, world.name, arm, baseline), "levels": d["levels"]}
        worlds[world.name] = entry
    correlations = {arm: {pool: _correlations(worlds, arm, pool) for pool in ("all", "held_out")} for arm in arms}
    return {"study": str(study_dir), "split": split, "n_per_level": n_per_level, "seed": seed,
            "baseline": baseline, "arms": list(arms), "worlds": worlds, "skipped": skipped,
            "correlations": correlations, "seconds": round(time.perf_counter() - started, 1)}


def format_study_trainability(result: dict[str, Any]) -> str:
    """Markdown: per arm, each world's predictions and gain, then rho [interval] and p for both predictors."""
    lines = [f"Bases profiled on split '{result['split']}', {result['n_per_level']} problems per level at most "
             f"(profile seed {result['seed']}); gains: the study's `<arm> - {result['baseline']}` estimates.", ""]
    for arm in result["arms"]:
        lines += [f"### `{arm} - {result['baseline']}`", "",
                  "| world | role | mask | prediction (labelled) | prediction (label-free) | measured gain "
                  "| same weights as the study |", "|" + "---|" * 7]
        for name, w in result["worlds"].items():
            a = w["arms"].get(arm)
            if a is None:
                continue
            gain = "-" if a["gain"] is None else f"{a['gain']:+.3f}"
            lines.append(f"| {name} | {w['role']} | {a['mask_votes']} of {a['samples']} | {a['prediction']:+.3f} "
                         f"| {a['prediction_label_free']:.3f} | {gain} | {_yes(w['same_weights'])} |")
        lines += ["", "| worlds | predictor | n | Spearman rho [95% Fisher-z interval] | exact permutation p |",
                  "|" + "---|" * 5]
        for pool, by in result["correlations"][arm].items():
            for predictor, c in by.items():
                if c.get("rho") is None:
                    lines.append(f"| {pool} | {predictor} | {c['n']} | undefined ({c['why']}) | - |")
                else:
                    lines.append(f"| {pool} | {predictor} | {c['n']} | {_num(c['rho'])} [{_num(c['low'])}, "
                                 f"{_num(c['high'])}] | {_num(c['p'], '.3f')} |")
        lines.append("")
    for name, why in result["skipped"].items():
        lines.append(f"- world {name} not profiled: {why}")
    return "\n".join(lines).rstrip() + "\n"


def write_study_trainability(out_dir: str | Path, result: dict[str, Any], command: str = "") -> list[Path]:
    """trainability.json and trainability.md in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "trainability.json", out / "trainability.md"
    js.write_text(json.dumps(result, indent=1) + "\n")
    head = "# Trainability diagnostic: predicted vs measured label-free gains\n\n"
    if command:
        head += f"Command: `{command}`\n\n"
    md.write_text(head + format_study_trainability(result))
    return [js, md]


def _base(world, recorded: dict[str, Any], build: bool, cache_dir: str | Path | None,
          log: Callable[[str], None]) -> tuple[str, bool | None] | str:
    """(model path, whether it has the study's weights) or why it is skipped."""
    if world.model:
        return world.model, None
    from agents.tiny.cache import base_path, ensure_tiny_base, is_built, read_metadata

    path = base_path(world.base_config(), cache_dir)
    if not (is_built(path) or world.is_default_base or build):
        return f"its base is not built here ({path}); `cuma base --study ... --build` trains it (minutes)"
    if not is_built(path):
        log(f"[trainability] world {world.name}: building its base (minutes) ...")
    path = ensure_tiny_base(world.base_config(), cache_dir=cache_dir, progress=False)
    sha = read_metadata(path).get("weights_sha256")
    return str(path), (None if not recorded.get("weights_sha256") else sha == recorded["weights_sha256"])


def _profile(world, path: str, how: dict[str, Any], *, n_per_level: int, split: str, seed: int, threads: int):
    import torch

    from cuma_env.catalog import get_task
    from cuma_env.problems import LEVELS

    levels = how["levels"] or list(LEVELS)
    template = how["template"] or get_task("CuMa-Arith-v0").template
    torch.set_num_threads(threads)
    if not world.model:
        from agents.tiny.model import load_tiny_base
        from agents.tiny.profile import evaluate_base

        model, tokenizer = load_tiny_base(path)
        return evaluate_base(model, tokenizer, n_per_level=n_per_level, levels=levels, temperature=how["temperature"],
                             samples=how["samples"], seed=seed, split=split, template=template,
                             max_new_tokens=how["max_new_tokens"], num_threads=threads)
    from agents.model_profile import profile_model
    from agents.policy import load_model
    from cuma_env.arithmetic import ArithmeticSource

    model, tokenizer = load_model(path, torch.device("cpu"))
    source = ArithmeticSource(split=split, seed=seed)
    groups = {f"L{lv}": [source.get(lv, i) for i in range(min(n_per_level, source.size(lv)))] for lv in levels}
    return profile_model(model, tokenizer, groups, model_name=path, template=template, samples=how["samples"],
                         temperature=how["temperature"], budgets=(how["max_new_tokens"],), seed=seed, split=split,
                         progress=False)


def _correlations(worlds: dict[str, Any], arm: str, pool: str) -> dict[str, dict[str, Any]]:
    rows = [w["arms"][arm] for w in worlds.values()
            if arm in w["arms"] and w["arms"][arm]["gain"] is not None and (pool == "all" or w["role"] == "held_out")]
    gains = [r["gain"] for r in rows]
    out = {}
    for predictor in ("prediction", "prediction_label_free"):
        name = "labelled" if predictor == "prediction" else "label-free"
        if len(rows) < 3:
            out[name] = {"n": len(rows), "rho": None, "why": "fewer than 3 worlds"}
            continue
        predicted = [r[predictor] for r in rows]
        rho, low, high = rank_correlation(predicted, gains)
        if math.isnan(rho):
            out[name] = {"n": len(rows), "rho": None, "why": "every prediction or gain tied"}
            continue
        out[name] = {"n": len(rows), "rho": rho, "low": low, "high": high, "p": permutation_p(predicted, gains),
                     "interval": "Fisher z, var 1.06/(n-3)"}
    return out


def _num(value: float, spec: str = "+.2f") -> str:
    return format(value, spec)


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no (rebuilt here: other weights)")


__all__ = ["ARMS", "BASELINE", "StudyDirError", "format_study_trainability", "measured_gain", "read_study", "recipe",
           "study_trainability", "write_study_trainability"]
