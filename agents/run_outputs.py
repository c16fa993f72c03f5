"""A run directory: resolved config, metrics CSVs, TensorBoard (when installed), the PNG report, a summary.

    run_dir/
      config.yaml        the resolved config (what `cuma train --resume` reloads)
      metrics.csv        one row per optimizer step (`METRIC_COLUMNS`)
      eval.csv           one row per (held-out evaluation, level) (`EVAL_COLUMNS`)
      eval_problems.jsonl  one line per held-out evaluation: its greedy pass problem by problem (ids, 0/1
                         correct and answered, the answers; `agents.evaluation.evaluate(per_problem=True)`), what
                         a study cell reads instead of evaluating its final model again
      report.png         held-out accuracy per level, mask rate, agreement, majority-label accuracy
                         (diagnostic only), collapse indicator, curriculum level; over steps
      summary.json       first/last held-out results, wall time, step timing
      checkpoints/       see agents.checkpoint
      model/             the final weights (save_pretrained), loadable by `cuma eval --model`
      tensorboard/       TorchRL's TensorboardLogger, if tensorboard is installed

Rows are appended and flushed as they come. On resume, rows after the checkpoint's step are dropped first
(a run killed after its last checkpoint may have logged a few more steps), so the CSVs and eval_problems.jsonl
always describe one uninterrupted history.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRIC_COLUMNS = (
    "step", "reward", "mask_rate", "agreement", "majority_acc", "pass_rate", "collapse", "parse_rate",
    "level", "batch_level", "kept_groups", "trained_groups", "trained_tokens", "probes", "loss", "grad_norm",
    "lr", "clip_fraction", "kl_to_ref", "entropy", "curriculum_concentration", "staleness", "stale_dropped",
    "generated", "samples_total", "samples_probe", "collect_s", "learn_s", "step_s", "wall_s",
)
TIME_COLUMNS = frozenset({"collect_s", "learn_s", "step_s", "wall_s"})
EVAL_COLUMNS = ("step", "level", "n", "greedy", "pass1", "maj", "parse_rate", "collapse", "seconds")
EVAL_PROBLEMS_FILE = "eval_problems.jsonl"


class RunOutputs:
    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, resume_step: int | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.csv"
        self.eval_path = self.run_dir / "eval.csv"
        self.problems_path = self.run_dir / EVAL_PROBLEMS_FILE
        for path, columns in ((self.metrics_path, METRIC_COLUMNS), (self.eval_path, EVAL_COLUMNS)):
            if resume_step is None or not path.is_file():
                _write_rows(path, columns, [])
            else:
                _write_rows(path, columns, [r for r in read_csv(path) if _step(r) <= resume_step])
        kept = [] if resume_step is None else [e for e in read_eval_problems(self.run_dir) if e["step"] <= resume_step]
        _write_lines(self.problems_path, kept)
        self.logger = _tensorboard_logger(self.run_dir) if tensorboard else None

    def log_step(self, row: Mapping[str, Any]) -> None:
        _append(self.metrics_path, METRIC_COLUMNS, row)
        if self.logger is not None:
            for key, value in row.items():
                if key != "step" and _finite(value):
                    self.logger.log_scalar(f"train/{key}", float(value), step=int(row["step"]))

    def log_eval(self, step: int, result: Mapping[str, Any], problems: Mapping[str, Any] | None = None) -> None:
        """eval.csv's rows of one evaluation, and its greedy pass problem by problem (`problems`, when given:
        `evaluate(per_problem=True)["problems"]`) as a line of eval_problems.jsonl."""
        if problems is not None:
            with open(self.problems_path, "a") as handle:
                handle.write(json.dumps({"step": step, **problems}) + "\n")
                handle.flush()
        for level, stats in result["levels"].items():
            _append(self.eval_path, EVAL_COLUMNS, {"step": step, "level": level, **stats,
                                                   "collapse": result["collapse"], "seconds": result["seconds"]})
            if self.logger is not None:
                for key in ("greedy", "pass1", "maj"):
                    if _finite(stats[key]):  # pass1 and maj are None in a greedy-only evaluation (eval.samples 0)
                        self.logger.log_scalar(f"eval/L{level}_{key}", float(stats[key]), step=step)
        if self.logger is not None:
            self.logger.log_scalar("eval/collapse", float(result["collapse"]), step=step)

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        path = self.run_dir / "summary.json"
        path.write_text(json.dumps(summary, indent=2, default=str))
        return path

    def write_report(self, title: str = "") -> Path:
        return write_report(self.run_dir, title)


def read_eval_problems(run_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of a run's eval_problems.jsonl ({"step", "levels", "collapse"}), in order; a line cut short by a
    kill is left out, and a run from before the file existed has none."""
    path = Path(run_dir) / EVAL_PROBLEMS_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _write_lines(path: Path, entries: list[Mapping[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in entries))
    tmp.replace(path)


def _step(row: Mapping[str, Any]) -> float:
    """A row's step; a line cut short by a kill (missing fields) sorts after every checkpoint."""
    try:
        return math.inf if None in row.values() else float(row["step"])
    except (TypeError, ValueError):
        return math.inf


def read_csv(path: str | Path) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _write_rows(path: Path, columns: tuple[str, ...], rows: list[Mapping[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _append(path: Path, columns: tuple[str, ...], row: Mapping[str, Any]) -> None:
    with open(path, "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore").writerow(
            {k: _fmt(row.get(k)) for k in columns})
        handle.flush()


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _tensorboard_logger(run_dir: Path):
    """TorchRL's TensorBoard logger, or None when tensorboard is not installed."""
    try:
        from torchrl.record.loggers.tensorboard import TensorboardLogger

        return TensorboardLogger(exp_name="tensorboard", log_dir=str(run_dir))
    except Exception:  # noqa: BLE001 - tensorboard missing or broken: CSV only
        return None


# --- the report ----------------------------------------------------------------------------------
def _column(rows: list[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        if r.get(key, "") != "":
            xs.append(float(r["step"]))
            ys.append(float(r[key]))
    return xs, ys


def _smooth(ys: list[float], k: int) -> list[float]:
    if k <= 1:
        return ys
    out, acc = [], []
    for y in ys:
        acc.append(y)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def write_report(run_dir: str | Path, title: str = "") -> Path:
    """report.png from metrics.csv and eval.csv (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_csv(run_dir / "metrics.csv")
    evals = read_csv(run_dir / "eval.csv")
    k = max(1, len(rows) // 25)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    ax = axes[0, 0]
    levels = sorted({e["level"] for e in evals}, key=lambda s: (not s.isdigit(), s))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, level in enumerate(levels):
        sub = [e for e in evals if e["level"] == level]
        c = colors[i % len(colors)]
        name = f"L{level}" if level.isdigit() else str(level)
        ax.plot(*_column(sub, "greedy"), "-o", color=c, ms=3, label=f"{name} greedy")
        ax.plot(*_column(sub, "pass1"), "--", color=c, alpha=0.6)
    ax.set_title("held-out accuracy per level\n(solid: greedy, dashed: sampled pass@1)", fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    if levels:
        ax.legend(fontsize=7, ncol=2)
    panels = [
        (axes[0, 1], [("mask_rate", "mask rate")], "mask rate (share of groups masked)", (0, 1)),
        (axes[0, 2], [("agreement", "agreement"), ("reward", "mean reward")], "agreement ratio", (0, 1)),
        (axes[1, 0], [("majority_acc", "majority label correct"), ("pass_rate", "response correct")],
         "majority-label accuracy (diagnostic only, never trained on)", (0, 1)),
        (axes[1, 1], [("collapse", "batch"), ("curriculum_concentration", "curriculum window")],
         "collapse indicator (share of the most common answer across prompts)", (0, 1)),
        (axes[1, 2], [("level", "curriculum level"), ("batch_level", "batch mean level")], "curriculum level",
         (0.5, 5.5)),
    ]
    for ax, series, name, ylim in panels:
        for key, label in series:
            xs, ys = _column(rows, key)
            if xs:
                ax.plot(xs, _smooth(ys, 1 if key in ("level",) else k), label=label)
        ax.set_title(name, fontsize=10)
        ax.set_ylim(*ylim)
        ax.legend(fontsize=7)
    xs, ys = _column(evals, "collapse")
    if xs:
        axes[1, 1].plot(xs, ys, "k.", label="held-out greedy answers")
        axes[1, 1].legend(fontsize=7)
    for ax in axes.flat:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title or run_dir.name)
    fig.tight_layout()
    path = run_dir / "report.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
