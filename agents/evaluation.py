"""Held-out evaluation and the benchmarks of `cuma eval`: pass@1 greedy, sampled pass@1 and maj@k per level.

    problems, template = bench_problems("arith", n_per_level=100)       # {level: [Problem]}, prompt template
    result = evaluate(policy, problems, template, samples=4, temperature=0.6, max_new_tokens=8)
    result["levels"][3]["greedy"], result["collapse"]

Benches: `arith` (the procedural family's test split, `cuma_env.ArithmeticSource(split="test")`, levels 1-5),
`math500` (levels 1-5), `gsm8k`, `aime24`, `amc23` (no levels: one row, level `all`); the files come from
`cuma_env.load_problems` under `$CUMA_DATA_DIR` (or `data_dir=`). During training the held-out bench is the
training env's test split (`heldout_bench`). Prompts are rendered exactly as the TorchRL env renders them
(the env's template, then the tokenizer's chat template), generation is plain batched `generate`.
Sampling runs under a forked, fixed-seed RNG, so evaluating never changes the training run's random stream
and the same weights always give the same numbers.

`collapse` is the share of the most common greedy answer across all evaluated prompts (1.0: one answer for
every problem, the paper's collapse).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cuma_env.answers import matches_reference
from cuma_env.problems import Problem

BENCHES = ("arith", "math500", "gsm8k", "aime24", "amc23")
_DATASET = {"math500": "math500", "gsm8k": "gsm8k_test", "aime24": "aime24", "amc23": "amc23"}
_TEMPLATE = {"arith": "compact", "math500": "default", "gsm8k": "default", "aime24": "default", "amc23": "default"}
ALL = "all"
LEVELLED = ("arith", "math500")  # the others have one row, level `all`


def heldout_bench(env_id: str) -> str:
    """The bench that is the training env's held-out split."""
    name = env_id.split(":")[-1]
    return {"CuMa-Arith-v0": "arith", "CuMa-Math-v0": "math500", "CuMa-GSM8K-v0": "gsm8k",
            "CuMa-AIME24-v0": "aime24", "CuMa-AMC23-v0": "amc23"}[name]


def bench_problems(bench: str, n_per_level: int | None = None, *, levels: Sequence[int] | None = None,
                   data_dir: Any = None, seed: int = 0) -> tuple[dict[Any, list[Problem]], str]:
    """The first `n_per_level` problems of each level of a bench (all of them if None), and its template."""
    if bench not in BENCHES:
        raise ValueError(f"unknown bench {bench!r}; choose one of {', '.join(BENCHES)}")
    if n_per_level is not None and n_per_level < 1:
        raise ValueError(f"problems per level must be >= 1 (or None: all), got {n_per_level}")
    if levels is not None and bench not in LEVELLED:
        raise ValueError(f"bench {bench} has no difficulty levels; leave the levels out")
    if levels is not None and (not levels or not set(levels) <= {1, 2, 3, 4, 5}):
        raise ValueError(f"bench {bench} has levels 1-5, got {list(levels)}")
    if bench == "arith":
        from cuma_env.arithmetic import ArithmeticSource

        source = ArithmeticSource(split="test", seed=seed)
        chosen = tuple(levels) if levels else source.levels
        by_level = {lv: [source.get(lv, i) for i in range(min(n_per_level or source.size(lv), source.size(lv)))]
                    for lv in chosen}
    else:
        from cuma_env.datasets import load_problems

        by_level: dict[Any, list[Problem]] = {}
        for p in load_problems(_DATASET[bench], data_dir=data_dir):
            key = p.level if p.level is not None else ALL
            if levels and p.level not in levels:
                continue
            by_level.setdefault(key, []).append(p)
        by_level = {k: v[:n_per_level] if n_per_level else v
                    for k, v in sorted(by_level.items(), key=lambda kv: (kv[0] == ALL, str(kv[0])))}
    return by_level, _TEMPLATE[bench]


def is_correct(answer: str | None, reference: str | None) -> bool:
    """Equivalence with the reference (`cuma_env.answers.matches_reference`)."""
    return matches_reference(answer, reference)


def context_overflow(policy: Any, problems: Mapping[Any, Sequence[Problem]], template: str,
                     max_new_tokens: int) -> tuple[int, int, int] | None:
    """(prompts whose tokens plus `max_new_tokens` exceed the model's positions, prompts, positions), or None
    when the model declares no limit. E.g. the tiny base (128 positions) on GSM8K: its answers there are not
    meaningful, and the user should hear it from us rather than from a transformers warning."""
    from agents.policy import render_prompts
    from cuma_env.prompting import format_prompt

    limit = getattr(getattr(policy.model, "config", None), "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    items = [p for level in problems.values() for p in level]
    prompts = render_prompts(policy.tokenizer, [format_prompt(p, template) for p in items])
    # verbose=False: measuring lengths past the model's limit is the point here, not a mistake to warn about
    lengths = [len(ids) for ids in policy.tokenizer(prompts, add_special_tokens=False, verbose=False)["input_ids"]]
    return sum(n + max_new_tokens > limit for n in lengths), len(lengths), limit


def evaluate(policy: Any, problems: Mapping[Any, Sequence[Problem]], template: str, *, samples: int = 4,
             temperature: float = 0.6, max_new_tokens: int = 16, batch_size: int = 512, seed: int = 0,
             top_p: float = 1.0) -> dict[str, Any]:
    """Greedy pass@1, sampled pass@1 (`samples` per problem), maj@`samples` per level; collapse; parse rate."""
    from agents.policy import render_prompts
    from cuma_env.answers import extract_answer
    from cuma_env.prompting import format_prompt
    from cuma_env.voting import majority_vote

    start = time.perf_counter()
    model = policy.model
    was_training = model.training
    model.eval()
    levels: dict[Any, dict[str, float]] = {}
    greedy_answers: list[str | None] = []
    devices = [policy.device.index or 0] if policy.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for level, items in problems.items():
                if not items:
                    continue
                prompts = render_prompts(policy.tokenizer, [format_prompt(p, template) for p in items])
                greedy = policy.generate_texts(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
                sampled = policy.generate_texts(prompts, samples=samples, temperature=temperature, top_p=top_p,
                                                max_new_tokens=max_new_tokens, batch_size=batch_size)
                g_hits = s_hits = maj_hits = parsed = 0
                for problem, g, group in zip(items, greedy, sampled):
                    answer = extract_answer(g[0])
                    greedy_answers.append(answer)
                    g_hits += is_correct(answer, problem.answer)
                    answers = [extract_answer(text) for text in group]
                    parsed += sum(a is not None for a in answers)
                    right = {a: is_correct(a, problem.answer) for a in set(answers)}
                    s_hits += sum(right[a] for a in answers)
                    label = majority_vote(answers, min_votes=1).label
                    maj_hits += label is not None and is_correct(label, problem.answer)
                n = len(items)
                levels[level] = {"n": n, "greedy": g_hits / n, "pass1": s_hits / (n * samples),
                                 "maj": maj_hits / n, "parse_rate": parsed / (n * samples)}
    finally:
        model.train(was_training)
    labels = [a for a in greedy_answers if a is not None]
    collapse = Counter(labels).most_common(1)[0][1] / len(greedy_answers) if labels else 0.0
    return {"levels": levels, "collapse": collapse, "samples": samples, "temperature": temperature,
            "seconds": time.perf_counter() - start}


def mean_over_levels(result: Mapping[str, Any], key: str = "greedy") -> float:
    values = [v[key] for v in result["levels"].values()]
    return sum(values) / len(values) if values else 0.0


def format_table(result: Mapping[str, Any], title: str = "") -> str:
    k, t = result["samples"], result["temperature"]
    lines = [title] if title else []
    lines.append(f"| level | n | pass@1 greedy | pass@1 T={t:g} (k={k}) | maj@{k} | parsed |")
    lines.append("|---|---|---|---|---|---|")
    for level, s in result["levels"].items():
        lines.append(f"| {level} | {s['n']} | {s['greedy']:.3f} | {s['pass1']:.3f} | {s['maj']:.3f} "
                     f"| {s['parse_rate']:.2f} |")
    lines.append(f"| mean | | {mean_over_levels(result):.3f} | {mean_over_levels(result, 'pass1'):.3f} "
                 f"| {mean_over_levels(result, 'maj'):.3f} | |")
    lines.append(f"collapse (share of the most common greedy answer): {result['collapse']:.3f}; "
                 f"{result['seconds']:.1f} s")
    return "\n".join(lines)
