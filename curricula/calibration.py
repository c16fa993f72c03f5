"""Label-free difficulty calibration: how hard each problem is *for the target model*, measured by agreement.

For every problem, N answers are sampled from the model; the vote (`cuma_env.voting.majority_vote`, the same
clustering CuMa's reward uses) gives the *agreement* (largest cluster / N, unparseable answers counted in N
but never voting) and the *mask* (largest cluster < `min_votes`). The measured level comes from agreement
bands: level k is the first k whose threshold the agreement reaches, level 5 below the last threshold, and a
masked group is always level 5.

Default bands `DEFAULT_BANDS = (0.8, 0.55, 0.4, 0.3)`: L1 agreement >= 0.8 (7-8 of 8), L2 >= 0.55 (5-6 of 8),
L3 >= 0.4 (4 of 8), L4 >= 0.3 (3 of 8), L5 below (<= 2 of 8) or masked. Chosen on an early tiny weak base
so that L5 is "agreement carries no information" (a cluster of 2 of 8 is right no more often than chance
there) and L1 "the model reliably solves it" (the majority's accuracy per band: docs/label-free-tiny-world.md,
"The default calibration bands"). Ratios, so they carry over to other N.
Bands are an option (`Bands((...))`, `--bands 0.8,0.55,0.4,0.3`); re-measure them for another model.

No label is read to measure a level. When a record carries a hidden `answer`, the output also says whether
the majority was right (`majority_correct`, `sample_accuracy`), and the summary reports how well agreement
predicts correctness (ROC AUC of agreement for majority correctness, majority accuracy per measured level and
per largest-cluster size).

    records = arith_records(per_level=100)                    # or read_jsonl(path) in the pools' layout
    out = calibrate(records, generate, template="compact", n_samples=8)  # generate(prompts, n) -> [[str]]
    summary = summarize(out); write_report(out, summary, "cal/")  # calibrated.jsonl, .md, .png, .json

Torch is never imported here: the caller brings `generate` (`agents/commands/calibrate.py` builds one).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cuma_env.answers import matches_reference
from cuma_env.atomic_io import atomic_file
from cuma_env.problems import LEVELS, Problem
from cuma_env.prompting import format_prompt
from cuma_env.voting import DEFAULT_MIN_VOTES

DEFAULT_BANDS: tuple[float, ...] = (0.8, 0.55, 0.4, 0.3)
ADDED_FIELDS = ("measured_level", "agreement", "masked", "majority", "majority_correct", "sample_accuracy",
                "n_samples")
Generate = Callable[[Sequence[str], int], list[list[str]]]

__all__ = ["ADDED_FIELDS", "Bands", "DEFAULT_BANDS", "arith_records", "assess_group", "auc", "calibrate",
           "format_report", "plot_report", "record_level", "select_per_level", "summarize", "write_report"]


@dataclass(frozen=True)
class Bands:
    """Agreement thresholds of measured levels 1..4 (strictly decreasing, in (0, 1]); below the last: 5."""

    thresholds: tuple[float, ...] = DEFAULT_BANDS

    def __post_init__(self) -> None:
        t = tuple(float(x) for x in self.thresholds)
        if len(t) != len(LEVELS) - 1 or any(not 0 < x <= 1 for x in t) or any(a <= b for a, b in zip(t, t[1:])):
            raise ValueError(f"bands must be {len(LEVELS) - 1} strictly decreasing agreement thresholds in (0, 1] "
                             f"(levels {LEVELS[0]}..{LEVELS[-2]}), got {self.thresholds!r}")
        object.__setattr__(self, "thresholds", t)

    @classmethod
    def parse(cls, text: str) -> Bands:
        try:
            return cls(tuple(float(x) for x in text.split(",") if x.strip()))
        except ValueError as exc:
            raise ValueError(f"--bands: {exc}") from None

    def level(self, agreement: float, masked: bool = False) -> int:
        if masked:
            return LEVELS[-1]
        for level, threshold in zip(LEVELS, self.thresholds):
            if agreement >= threshold - 1e-9:
                return level
        return LEVELS[-1]

    def describe(self) -> str:
        parts = [f"L{k} >= {t:g}" for k, t in zip(LEVELS, self.thresholds)]
        return ", ".join(parts) + f", L{LEVELS[-1]} below or masked"


# --- inputs -----------------------------------------------------------------------------------------
def record_level(record: Mapping[str, Any]) -> int | None:
    """The requested level of a pool record: an int in `LEVELS`, `"Level 3"`, or None."""
    level = record.get("level")
    if isinstance(level, str) and level.strip().lower().startswith("level"):
        level = level.strip()[5:].strip()
    try:
        level = int(level) if level is not None else None
    except (TypeError, ValueError):
        return None
    return level if level in LEVELS else None


def arith_records(per_level: int = 100, *, split: str = "train", seed: int = 0,
                  levels: Sequence[int] = LEVELS) -> list[dict[str, Any]]:
    """The first `per_level` problems of each level of the procedural family, as pool records."""
    from cuma_env.arithmetic import ArithmeticSource

    source = ArithmeticSource(split=split, seed=seed, levels=tuple(levels))
    return [source.get(lv, i).to_json() for lv in source.levels for i in range(min(per_level, source.size(lv)))]


def select_per_level(records: Iterable[Mapping[str, Any]], per_level: int | None) -> list[dict[str, Any]]:
    """The first `per_level` records of each requested level, in file order (None: all)."""
    taken: dict[int | None, int] = {}
    out = []
    for record in records:
        level = record_level(record)
        if per_level is None or taken.get(level, 0) < per_level:
            taken[level] = taken.get(level, 0) + 1
            out.append(dict(record))
    return out


def _problem(record: Mapping[str, Any], index: int) -> Problem:
    text = record.get("problem", record.get("question"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"record {index}: no 'problem' text")
    answer = record.get("answer")
    return Problem(id=str(record.get("id") or record.get("unique_id") or index), prompt=text,
                   level=record_level(record), source=str(record.get("source") or "file"),
                   answer=None if answer is None else str(answer))


# --- measuring --------------------------------------------------------------------------------------
def assess_group(completions: Sequence[str], reference: str | None = None, *, bands: Bands = Bands(),
                 min_votes: int | float = DEFAULT_MIN_VOTES) -> dict[str, Any]:
    """The fields calibration adds to a record, from one group of completions (reference: diagnostics only)."""
    from cuma_env.answers import extract_answer
    from cuma_env.voting import majority_vote

    answers = [extract_answer(text) for text in completions]
    vote = majority_vote(answers, min_votes=min_votes)
    out: dict[str, Any] = {"measured_level": bands.level(vote.agreement, vote.masked),
                           "agreement": round(vote.agreement, 6), "masked": bool(vote.masked),
                           "majority": vote.label, "n_samples": len(completions)}
    if reference is not None and str(reference).strip():
        verdict = {a: matches_reference(a, reference) for a in set(answers)}
        out["majority_correct"] = bool(vote.label is not None and verdict[vote.label])
        out["sample_accuracy"] = round(sum(verdict[a] for a in answers) / max(1, len(answers)), 6)
    return out


def calibrate(records: Sequence[Mapping[str, Any]], generate: Generate, *, template: str = "default",
              n_samples: int = 8, bands: Bands = Bands(), min_votes: int | float = DEFAULT_MIN_VOTES, chunk: int = 64,
              progress: bool = False) -> list[dict[str, Any]]:
    """Each record plus the `ADDED_FIELDS` (see `assess_group`), in input order.

    `generate(prompts, n)` returns n completions per prompt; it is called on chunks of `chunk` prompts.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to measure agreement, got {n_samples}")
    problems = [_problem(r, i) for i, r in enumerate(records)]
    prompts = [format_prompt(p, template) for p in problems]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), desc="calibrate", unit="problem", dynamic_ncols=True)
    out: list[dict[str, Any]] = []
    try:
        for start in range(0, len(prompts), max(1, chunk)):
            groups = generate(prompts[start:start + chunk], n_samples)
            for record, problem, group in zip(records[start:start + chunk], problems[start:start + chunk], groups):
                if len(group) != n_samples:
                    raise ValueError(f"generate returned {len(group)} completions, expected {n_samples}")
                out.append({**record, **assess_group(group, problem.answer, bands=bands, min_votes=min_votes)})
            if bar is not None:
                bar.update(len(groups))
    finally:
        if bar is not None:
            bar.close()
    return out


# --- summary ----------------------------------------------------------------------------------------
def auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """ROC AUC of `scores` for `labels` (ties count one half); None when only one class is present."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    def rank(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for value in np.unique(v):  # average ties
            r[v == value] = r[v == value].mean()
        return r
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(rank(a), rank(b))[0, 1])


def _key(level: int | None) -> str:
    return "none" if level is None else str(level)


def summarize(records: Sequence[Mapping[str, Any]], bands: Bands = Bands()) -> dict[str, Any]:
    """Requested vs measured levels, agreement per level, and agreement vs correctness (when answers exist)."""
    if not records:
        raise ValueError("nothing to summarize: no calibrated records")
    requested = sorted({record_level(r) for r in records}, key=lambda lv: (lv is None, lv or 0))
    per_level: dict[str, dict[str, Any]] = {}
    confusion = {_key(lv): {str(m): 0 for m in LEVELS} for lv in requested}
    for lv in requested:
        rows = [r for r in records if record_level(r) == lv]
        agreement = np.array([r["agreement"] for r in rows], float)
        measured = np.array([r["measured_level"] for r in rows], float)
        for m in measured:
            confusion[_key(lv)][str(int(m))] += 1
        stats: dict[str, Any] = {"n": len(rows), "agreement": float(agreement.mean()),
                                 "agreement_sem": float(agreement.std(ddof=1) / math.sqrt(len(rows)))
                                 if len(rows) > 1 else 0.0,
                                 "masked": float(np.mean([r["masked"] for r in rows])),
                                 "measured_mean": float(measured.mean())}
        graded = [r for r in rows if "majority_correct" in r]
        if graded:
            stats["majority_acc"] = float(np.mean([r["majority_correct"] for r in graded]))
            stats["sample_acc"] = float(np.mean([r["sample_accuracy"] for r in graded]))
        per_level[_key(lv)] = stats
    measured_rows: dict[str, dict[str, Any]] = {}
    for m in LEVELS:
        rows = [r for r in records if r["measured_level"] == m]
        graded = [r for r in rows if "majority_correct" in r]
        measured_rows[str(m)] = {"n": len(rows),
                                 "agreement": float(np.mean([r["agreement"] for r in rows])) if rows else None,
                                 "majority_acc": float(np.mean([r["majority_correct"] for r in graded]))
                                 if graded else None}
    levelled = [lv for lv in requested if lv is not None]
    means = [per_level[_key(lv)]["agreement"] for lv in levelled]
    measured_means = [per_level[_key(lv)]["measured_mean"] for lv in levelled]
    paired = [r for r in records if record_level(r) is not None]
    order = {"levels": levelled,
             "agreement_strictly_decreasing": all(a > b for a, b in zip(means, means[1:])),
             "measured_nondecreasing": all(a <= b for a, b in zip(measured_means, measured_means[1:])),
             "spearman_requested_measured": _spearman([record_level(r) for r in paired],
                                                      [r["measured_level"] for r in paired]),
             "exact_match": float(np.mean([record_level(r) == r["measured_level"] for r in paired]))
             if paired else None}
    graded = [r for r in records if "majority_correct" in r]
    correctness: dict[str, Any] | None = None
    if graded:
        sizes: dict[str, list[bool]] = {}
        for r in graded:
            sizes.setdefault(str(round(r["agreement"] * r["n_samples"])), []).append(bool(r["majority_correct"]))
        correctness = {
            "n": len(graded),
            "auc": auc([r["agreement"] for r in graded], [r["majority_correct"] for r in graded]),
            "majority_acc": float(np.mean([r["majority_correct"] for r in graded])),
            "by_cluster_size": {k: {"n": len(v), "majority_acc": float(np.mean(v))}
                                for k, v in sorted(sizes.items(), key=lambda kv: int(kv[0]))},
            "auc_by_requested_level": {_key(lv): auc([r["agreement"] for r in graded if record_level(r) == lv],
                                                     [r["majority_correct"] for r in graded if record_level(r) == lv])
                                       for lv in requested}}
    return {"n": len(records), "bands": list(bands.thresholds), "bands_text": bands.describe(),
            "requested": per_level, "measured": measured_rows, "confusion": confusion, "order": order,
            "correctness": correctness}


def _f(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_report(summary: Mapping[str, Any], title: str = "Difficulty calibration") -> str:
    """Markdown: requested vs measured levels, agreement per level, agreement vs correctness."""
    lines = [f"# {title}", "", f"Bands: {summary['bands_text']}; {summary['n']} problems.", "",
             "| requested level | n | mean agreement (± sem) | masked | mean measured level | measured L1 / L2 / L3 / "
             "L4 / L5 | majority acc | sample acc |", "|---|---|---|---|---|---|---|---|"]
    for key, s in summary["requested"].items():
        counts = " / ".join(str(summary["confusion"][key][str(m)]) for m in LEVELS)
        lines.append(f"| {key} | {s['n']} | {s['agreement']:.3f} ± {s['agreement_sem']:.3f} | {s['masked']:.2f} "
                     f"| {s['measured_mean']:.2f} | {counts} | {_f(s.get('majority_acc'))} "
                     f"| {_f(s.get('sample_acc'))} |")
    lines += ["", "| measured level | n | mean agreement | majority acc |", "|---|---|---|---|"]
    for key, s in summary["measured"].items():
        lines.append(f"| {key} | {s['n']} | {_f(s['agreement'], '.3f')} | {_f(s['majority_acc'])} |")
    o = summary["order"]
    lines += ["", f"Order: mean agreement strictly decreasing over requested levels {o['levels']}: "
                  f"**{o['agreement_strictly_decreasing']}**; mean measured level non-decreasing: "
                  f"**{o['measured_nondecreasing']}**; Spearman(requested, measured) = "
                  f"{_f(o['spearman_requested_measured'], '.3f')}; exact level match {_f(o['exact_match'])}."]
    c = summary.get("correctness")
    if c:
        by_size = ", ".join(f"{k}: {v['majority_acc']:.2f} ({v['n']})" for k, v in c["by_cluster_size"].items())
        per_level = ", ".join(f"L{k} {_f(v, '.2f')}" for k, v in c["auc_by_requested_level"].items())
        lines += ["", f"Agreement vs correctness ({c['n']} problems with answers): ROC AUC of agreement for a "
                      f"correct majority = **{_f(c['auc'], '.3f')}** (within requested levels: {per_level}); "
                      f"majority accuracy {c['majority_acc']:.2f}.",
                  f"Majority accuracy by largest-cluster size (size: acc (n)): {by_size}."]
    return "\n".join(lines) + "\n"


def plot_report(summary: Mapping[str, Any], path: str | os.PathLike, title: str = "Difficulty calibration") -> Path:
    """PNG: confusion heatmap (requested x measured, row shares) and mean agreement per requested level."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = list(summary["requested"])
    counts = np.array([[summary["confusion"][k][str(m)] for m in LEVELS] for k in keys], float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(len(keys)):
        for j in range(len(LEVELS)):
            ax1.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                     color="white" if shares[i, j] > 0.55 else "black", fontsize=9)
    ax1.set_xticks(range(len(LEVELS)), [str(m) for m in LEVELS])
    ax1.set_yticks(range(len(keys)), keys)
    ax1.set_xlabel("measured level")
    ax1.set_ylabel("requested level")
    ax1.set_title("requested vs measured (row shares, counts)")
    x = np.arange(len(keys))
    agreement = [summary["requested"][k]["agreement"] for k in keys]
    sem = [summary["requested"][k]["agreement_sem"] for k in keys]
    ax2.errorbar(x, agreement, yerr=sem, marker="o", capsize=3, label="mean agreement")
    ax2.plot(x, [summary["requested"][k]["masked"] for k in keys], marker="s", ls=":", label="masked share")
    if any("majority_acc" in summary["requested"][k] for k in keys):
        ax2.plot(x, [summary["requested"][k].get("majority_acc", np.nan) for k in keys], marker="^", ls="--",
                 label="majority accuracy")
    for k, t in zip(LEVELS, summary["bands"]):
        ax2.axhline(t, color="grey", lw=0.6, alpha=0.5)
        ax2.text(-0.15, t, f"L{k} band", fontsize=7, color="grey", va="bottom", ha="left")
    ax2.set_xticks(x, keys)
    ax2.set_xlim(-0.2, len(keys) - 0.8)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("requested level")
    ax2.set_title("agreement per requested level")
    ax2.legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], out_dir: str | os.PathLike,
                 *, meta: Mapping[str, Any] | None = None, title: str = "Difficulty calibration") -> dict[str, Path]:
    """`calibrated.jsonl` (input records + measured fields), `calibration.md`, `calibration.png`,
    `calibration.json` (summary + meta) under `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"jsonl": out / "calibrated.jsonl", "table": out / "calibration.md", "plot": out / "calibration.png",
             "summary": out / "calibration.json"}
    with atomic_file(paths["jsonl"]) as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    paths["table"].write_text(format_report(summary, title), encoding="utf-8")
    plot_report(summary, paths["plot"], title)
    paths["summary"].write_text(json.dumps({**summary, "meta": dict(meta or {})}, indent=2, default=str) + "\n")
    return paths
