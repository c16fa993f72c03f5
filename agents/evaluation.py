"""Held-out evaluation and the benchmarks of `cuma eval`: pass@1 greedy, sampled pass@1 and maj@k per level.

    problems, template = bench_problems("arith", n_per_level=100)       # {level: [Problem]}, prompt template
    result = evaluate(policy, problems, template, samples=4, temperature=0.6, max_new_tokens=8)
    result["levels"][3]["greedy"], result["collapse"]

Benches are the tasks of the registry (`cuma_env.tasks`: the built-ins, installed plugins', a `module:Attr`
path) that name a `bench`: its `bench_split` is the problems (`split=` picks another held-out split: arith's
`validation`, for tuning), its template and levelled-ness those of the task. Today: `arith` (the procedural
family's test split, levels 1-5), `math500` (levels 1-5), `gsm8k`, `aime24`, `amc23` (no levels: one row,
level `all`); the files come from
`cuma_env.load_problems` under `$CUMA_DATA_DIR` (or `data_dir=`). During training the held-out bench is the
training env's (`heldout_bench`), on the split `eval.split` names. Prompts are rendered exactly as the TorchRL
env renders them (the env's template, then the tokenizer's chat template); generation is `agents.generation`.
Sampling runs under a forked, fixed-seed RNG, so evaluating never changes the training run's random stream
and the same weights always give the same numbers.

`collapse` is the share of the most common greedy answer across all evaluated prompts (1.0: one answer for
every problem, the paper's collapse). A run's held-out evaluation (its problems `heldout_set`, its settings the
config's `eval` section) is one call, `evaluate_heldout`: the trainer, the base arm and the examples make it.
The trainer keeps each evaluation's greedy pass problem by problem (`per_problem=True`: the run's
eval_problems.jsonl), which a study cell reads instead of evaluating its final model again; a study world's start
evaluations are computed once and reused (`agents.evaluation_reuse`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cuma_env.answers import matches_reference
from cuma_env.catalog import Task, get_task
from cuma_env.problems import LEVELS, Problem

ALL = "all"
# problems per level when none is asked for, on a procedural bench: the arith test split's level 5 has ~146k;
# 400 per level is what `cuma reproduce` evaluates (all of levels 1-2, whose splits are smaller)
PROCEDURAL_DEFAULT_N = 400
FILE_BENCH_MAX_NEW_TOKENS = 1024  # a default long enough for a real model's worked solution


def benches() -> dict[str, Task]:
    """bench name -> its task, in catalog order (installed plugins' included)."""
    from cuma_env.tasks import all_tasks

    return {task.bench: task for task in all_tasks().values() if task.bench is not None}


def bench_names() -> tuple[str, ...]:
    return tuple(benches())


def bench_task(bench: str) -> Task:
    """The task of a bench name, or of a task's `module:Attr` path (registered on first use)."""
    from cuma_env.tasks import find_bench

    return find_bench(bench)


def heldout_bench(env_id: str) -> str:
    """The bench that is the training env's held-out split."""
    task = get_task(env_id)
    if task.bench is None:
        raise ValueError(f"{env_id} names no evaluation bench (`bench` of its cuma_env.tasks.Task)")
    return task.bench


def is_procedural(bench: str) -> bool:
    """Whether a bench's problems are generated (no data file), as the tiny world's arithmetic is."""
    task = bench_task(bench)
    return task.datasets[task.bench_split] is None


def default_n(bench: str) -> int | None:
    """Problems per level `cuma eval` takes when not told: all of a file bench, 400 of a procedural one."""
    return PROCEDURAL_DEFAULT_N if is_procedural(bench) else None


def default_max_new_tokens(bench: str) -> int:
    """The tiny base's longest worked steps on a procedural bench; room for a real model's on the others."""
    from agents.tiny.corpus import MAX_COMPLETION_TOKENS

    return MAX_COMPLETION_TOKENS if is_procedural(bench) else FILE_BENCH_MAX_NEW_TOKENS


def bench_splits(bench: str) -> tuple[str, ...]:
    """The held-out splits a bench can evaluate (every split of its task but `train`; arith: validation, test)."""
    return tuple(s for s in bench_task(bench).datasets if s != "train")


def bench_problems(bench: str, n_per_level: int | None = None, *, levels: Sequence[int] | None = None,
                   data_dir: Any = None, seed: int = 0,
                   split: str | None = None) -> tuple[dict[Any, list[Problem]], str]:
    """The first `n_per_level` problems of each level of a bench (all of them if None), and its template.
    `split` (default: the bench's `bench_split`, test) picks another held-out split, e.g. arith's validation."""
    task = bench_task(bench)
    split = split or task.bench_split
    if split not in bench_splits(bench):
        raise ValueError(f"bench {bench} evaluates the split{'s' if len(bench_splits(bench)) > 1 else ''} "
                         f"{', '.join(bench_splits(bench))}, not {split!r}")
    if n_per_level is not None and n_per_level < 1:
        raise ValueError(f"problems per level must be >= 1 (or None: all), got {n_per_level}")
    if levels is not None and not task.levelled:
        raise ValueError(f"bench {bench} has no difficulty levels; leave the levels out")
    if levels is not None and (not levels or not set(levels) <= set(LEVELS)):
        raise ValueError(f"bench {bench} has levels 1-5, got {list(levels)}")
    dataset = task.datasets[split]
    if dataset is None:  # procedural: every level generated in order, `levels` in the order asked
        from cuma_env.catalog import make_source

        source = make_source(task.env_id, split, seed=seed)
        chosen = tuple(levels) if levels else source.levels
        by_level = {lv: [source.get(lv, i) for i in range(min(n_per_level or source.size(lv), source.size(lv)))]
                    for lv in chosen}
    else:
        from cuma_env.datasets import load_problems

        by_level: dict[Any, list[Problem]] = {}
        for p in load_problems(dataset, data_dir=data_dir):
            key = p.level if p.level is not None else ALL
            if levels and p.level not in levels:
                continue
            by_level.setdefault(key, []).append(p)
        by_level = {k: v[:n_per_level] if n_per_level else v
                    for k, v in sorted(by_level.items(), key=lambda kv: (kv[0] == ALL, str(kv[0])))}
    return by_level, task.template


def is_correct(answer: str | None, reference: str | None) -> bool:
    """Equivalence with the reference (`cuma_env.answers.matches_reference`)."""
    return matches_reference(answer, reference)


def context_overflow(policy: Any, problems: Mapping[Any, Sequence[Problem]], template: str,
                     max_new_tokens: int) -> tuple[int, int, int] | None:
    """(prompts whose tokens plus `max_new_tokens` exceed the model's positions, prompts, positions), or None
    when the model declares no limit. E.g. the tiny base (128 positions) on GSM8K: its answers there are not
    meaningful, and the user should hear it from us rather than from a transformers warning."""
    limit = getattr(getattr(policy.model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    items = [p for level in problems.values() for p in level]
    prompts = _prompts(policy, items, template)
    # verbose=False: measuring lengths past the model's limit is the point here, not a mistake to warn about
    lengths = [len(ids) for ids in policy.tokenizer(prompts, add_special_tokens=False, verbose=False)["input_ids"]]
    return sum(n + max_new_tokens > limit for n in lengths), len(lengths), limit


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """The model in eval mode for the block, then back in the mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _prompts(policy: Any, items: Sequence[Problem], template: str) -> list[str]:
    from agents.policy import render_prompts
    from cuma_env.prompting import format_prompt

    return render_prompts(policy.tokenizer, [format_prompt(p, template) for p in items])


def _greedy_answers(policy: Any, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int,
                    last_number_fallback: bool = True) -> list[str | None]:
    """The greedy answer of each prompt: the one greedy pass that `evaluate` and `greedy_per_problem` share."""
    from cuma_env.answers import extract_answer

    greedy = policy.generate_texts(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [extract_answer(g[0], last_number_fallback=last_number_fallback) for g in greedy]


def evaluate(policy: Any, problems: Mapping[Any, Sequence[Problem]], template: str, *, samples: int = 4,
             temperature: float = 0.6, max_new_tokens: int = 16, batch_size: int = 512, seed: int = 0,
             top_p: float = 1.0, last_number_fallback: bool = True, per_problem: bool = False) -> dict[str, Any]:
    """Greedy pass@1, sampled pass@1 (`samples` per problem), maj@`samples` per level; collapse; parse rate.
    `samples=0`: the greedy pass only (pass1, maj and parse_rate are None), for readers of greedy alone (a study
    cell), which saves the sampled passes' ~80% of an evaluation and leaves the greedy results as they were.
    Answers are read by the rule the run trains with (`last_number_fallback`: `env.last_number_fallback`).
    `per_problem`: also "problems", the greedy pass problem by problem as `greedy_per_problem` gives it, plus
    each greedy answer (a study cell reads its final model's from the trainer's final evaluation)."""
    from agents.generation import seeded
    from cuma_env.answers import extract_answer
    from cuma_env.voting import majority_vote

    start = time.perf_counter()
    levels: dict[Any, dict[str, float]] = {}
    greedy_answers: list[str | None] = []
    records: dict[str, dict[str, list]] = {}
    with _eval_mode(policy.model), seeded(seed, policy.device):
        for level, items in problems.items():
            if not items:
                continue
            prompts = _prompts(policy, items, template)
            greedy = _greedy_answers(policy, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                     last_number_fallback=last_number_fallback)
            sampled = policy.generate_texts(prompts, samples=samples, temperature=temperature, top_p=top_p,
                                            max_new_tokens=max_new_tokens, batch_size=batch_size) if samples else []
            greedy_answers += greedy
            if per_problem:
                records[str(level)] = _per_problem(items, greedy, answers_too=True)
            s_hits = maj_hits = parsed = 0
            g_hits = sum(is_correct(answer, problem.answer) for problem, answer in zip(items, greedy))
            for problem, group in zip(items, sampled):
                answers = [extract_answer(text, last_number_fallback=last_number_fallback) for text in group]
                parsed += sum(a is not None for a in answers)
                right = {a: is_correct(a, problem.answer) for a in set(answers)}
                s_hits += sum(right[a] for a in answers)
                label = majority_vote(answers, min_votes=1).label
                maj_hits += label is not None and is_correct(label, problem.answer)
            n = len(items)
            levels[level] = {"n": n, "greedy": g_hits / n, "pass1": s_hits / (n * samples) if samples else None,
                             "maj": maj_hits / n if samples else None,
                             "parse_rate": parsed / (n * samples) if samples else None}
    result = {"levels": levels, "collapse": heldout_collapse(greedy_answers), "samples": samples,
              "temperature": temperature, "seconds": time.perf_counter() - start}
    if per_problem:
        result["problems"] = {"levels": records, "collapse": result["collapse"]}
    return result


def heldout_set(config: Any) -> tuple[dict[Any, list[Problem]], str]:
    """A run's held-out problems (`eval.n_per_level` per level of `eval.split` of the training env's bench; no
    RNG, so when they are read is free) and the prompt template the run trains on."""
    e = config.env
    problems, template = bench_problems(heldout_bench(e.id), config.eval.n_per_level, levels=e.levels,
                                        data_dir=e.data_dir, split=config.eval.split)
    return problems, e.prompt_template or template


def evaluate_heldout(policy: Any, config: Any, heldout: tuple[Any, str] | None = None, *,
                     per_problem: bool = False) -> dict[str, Any]:
    """`evaluate` under the run's `eval` settings on `heldout` (default: `heldout_set(config)`), `per_problem`
    as there. Inside `agents.evaluation_reuse.reusing_start_evaluations` a model's first evaluation is reused
    when the same one was computed before (a study world's start evaluation), with `reused: True`."""
    from agents.evaluation_reuse import reused_or_computed

    problems, template = heldout if heldout is not None else heldout_set(config)
    c = config
    settings = dict(samples=c.eval.samples, temperature=c.eval.temperature,
                    max_new_tokens=c.eval.max_new_tokens or c.rollout.max_new_tokens, batch_size=c.eval.batch_size,
                    seed=c.seed, top_p=c.rollout.top_p, last_number_fallback=c.env.last_number_fallback)
    result = reused_or_computed(policy, problems, template, settings,
                                lambda: evaluate(policy, problems, template, per_problem=True, **settings))
    if not per_problem:
        result.pop("problems", None)
    return result


def heldout_collapse(answers: Sequence[str | None]) -> float:
    """Share of held-out prompts whose greedy answer is the most common one (1.0 = one answer for everything).

    Unlike training's `collapse` (`cuma_env.episode.collapse`: groups' majorities, groups without a majority
    left out), every prompt counts here, answered or not: a model that stops answering does not look collapsed.
    """
    labels = [a for a in answers if a is not None]
    return Counter(labels).most_common(1)[0][1] / len(answers) if labels else 0.0


def greedy_per_problem(policy: Any, problems: Mapping[Any, Sequence[Problem]], template: str, *,
                       max_new_tokens: int, batch_size: int = 512, last_number_fallback: bool = True) -> dict[str, Any]:
    """Greedy correctness problem by problem (for paired statistics), in the same batches as `evaluate`, so the
    per-level means equal its `greedy`: {"levels": {level: {"ids", "correct", "answered"}}, "collapse"}."""
    levels: dict[str, dict[str, list]] = {}
    answers_all: list[str | None] = []
    with _eval_mode(policy.model):
        for level, items in problems.items():
            answers = _greedy_answers(policy, _prompts(policy, items, template), max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, last_number_fallback=last_number_fallback)
            answers_all += answers
            levels[str(level)] = _per_problem(items, answers)
    return {"levels": levels, "collapse": heldout_collapse(answers_all)}


def _per_problem(items: Sequence[Problem], answers: Sequence[str | None], *, answers_too: bool = False
                 ) -> dict[str, list]:
    """One level's greedy results problem by problem: ids, 0/1 correct, 0/1 answered (and the answers)."""
    record = {"ids": [p.id for p in items], "correct": [int(is_correct(a, p.answer)) for a, p in zip(answers, items)],
              "answered": [int(a is not None) for a in answers]}
    if answers_too:
        record["answers"] = list(answers)
    return record


def mean_over_levels(result: Mapping[str, Any], key: str = "greedy") -> float | None:
    """The mean of `key` over the levels (None where the evaluation did not measure it: `samples=0`)."""
    values = [v[key] for v in result["levels"].values()]
    if any(v is None for v in values):
        return None
    return sum(values) / len(values) if values else 0.0


def _share(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def format_table(result: Mapping[str, Any], title: str = "") -> str:
    k, t = result["samples"], result["temperature"]
    lines = [title] if title else []
    lines.append(f"| level | n | pass@1 greedy | pass@1 T={t:g} (k={k}) | maj@{k} | parsed |")
    lines.append("|---|---|---|---|---|---|")
    for level, s in result["levels"].items():
        lines.append(f"| {level} | {s['n']} | {s['greedy']:.3f} | {_share(s['pass1'])} | {_share(s['maj'])} "
                     f"| {_share(s['parse_rate'], 2)} |")
    lines.append(f"| mean | | {mean_over_levels(result):.3f} | {_share(mean_over_levels(result, 'pass1'))} "
                 f"| {_share(mean_over_levels(result, 'maj'))} | |")
    lines.append(f"collapse (share of the most common greedy answer): {result['collapse']:.3f}; "
                 f"{result['seconds']:.1f} s")
    return "\n".join(lines)


def resolve_model(path: str) -> tuple[str, dict | None]:
    """A model path to load, plus a state dict when `path` is a run directory without a final model/."""
    run = Path(path)
    if (run / "config.yaml").is_file() and not (run / "config.json").is_file():
        if (run / "model" / "config.json").is_file():
            return str(run / "model"), None
        from agents.checkpoint import latest_checkpoint, load_checkpoint
        from agents.config import from_dict, read_yaml

        checkpoint = latest_checkpoint(run)
        if checkpoint is None:
            raise FileNotFoundError(f"run directory {run} has neither model/ nor a checkpoint")
        from agents.lora import lora_scaling, merge_lora_state

        saved = read_yaml(run / "config.yaml")
        config, state = from_dict(saved), load_checkpoint(checkpoint)["model"]
        scaling = lora_scaling(saved)  # a LoRA run's checkpoint holds the adapters: merged into plain weights
        return config.model.path, state if scaling is None else merge_lora_state(state, scaling)
    return path, None


def write_results(result: Mapping[str, Any], out: Path, *, model: str, bench: str,
                  max_new_tokens: int, split: str | None = None) -> tuple[Path, Path]:
    """eval-<bench>.json (everything) and eval-<bench>.csv (one row per level) under `out`."""
    json_path, csv_path = out / f"eval-{bench}.json", out / f"eval-{bench}.csv"
    payload = {"model": model, "bench": bench, "split": split or bench_task(bench).bench_split,
               "max_new_tokens": max_new_tokens, **result}
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["level", "n", "greedy", "pass1", "maj", "parse_rate"])
        for level, s in result["levels"].items():
            sampled = ("" if s[k] is None else s[k] for k in ("pass1", "maj", "parse_rate"))  # None: samples 0
            writer.writerow([level, s["n"], s["greedy"], *sampled])
    return json_path, csv_path
