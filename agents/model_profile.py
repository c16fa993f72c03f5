"""What a chat model answers before any training: the numbers that say whether label-free RL can work on it.

    profile = profile_model(model, tokenizer, problems_by_level, samples=8, temperature=0.6,
                            max_new_tokens=192, budgets=(64, 96, 192))
    print(profile.format_table())

Per level (or benchmark): greedy and sampled pass@1, maj@k, the parse rate, the share of completions that
write `\\boxed{}`, mean completion tokens, and the share of groups a 2-vote and a 6-of-8 mask keep, with the
majority's accuracy among the kept groups (and per size of the largest cluster, from which
`agents.experiments.trainability` reads any mask and the agreement). Each row is computed under each answer
rule (`boxed`: only a marked answer counts; `fallback`: the env's `last_number_fallback=True`, where the last
number of unmarked text is the answer) and at each token budget: one generation at the largest budget is cut
at the smaller ones (the first b tokens of a sample are what a generation of b tokens draws from the same
stream), so a table of budgets costs one generation. Prompts go through the model's own chat template
(`agents.policy.render_prompts`). `cuma base --model NAME` prints it; the tiny base keeps its own profile
(`agents.tiny.profile`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from agents.generation import generate_new_tokens
from cuma_env.answers import extract_answer, matches_reference
from cuma_env.problems import Problem
from cuma_env.voting import majority_vote

RULES = ("boxed", "fallback")
STRICT_SHARE = 0.75  # the 6-of-8 mask of the gated recipe


@dataclass
class RuleStats:
    """One (group of problems, answer rule, token budget) cell."""

    n: int
    greedy: float              # greedy pass@1
    pass1: float               # sampled pass@1
    maj: float                 # maj@k: the plurality answer is right (unanswered never vote)
    parsed: float              # share of sampled completions with an answer under the rule
    kept_2vote: float          # share of groups whose largest cluster has >= 2 votes
    kept_strict: float         # ... >= 75% of the group
    maj_acc_2vote: float | None   # majority accuracy among the groups the 2-vote mask keeps
    maj_acc_strict: float | None
    # largest-cluster size -> {"groups": count, "majority_acc": accuracy of the plurality answer}, as the tiny
    # base's profile records it: any mask's kept share and the agreement follow (agents.experiments.trainability)
    majority_by_cluster: dict[int, dict[str, float]] = field(default_factory=dict)


@dataclass
class GroupProfile:
    name: str                  # "L1" ... "L5" or a benchmark name
    n: int
    boxed: float               # share of sampled completions that write \boxed{...}
    finished: float            # share of sampled completions that end before the budget (eos)
    mean_tokens: float         # mean sampled completion length (tokens), at the largest budget
    cells: dict[str, dict[int, RuleStats]] = field(default_factory=dict)  # rule -> budget -> stats


@dataclass
class ModelProfile:
    model: str
    samples: int
    temperature: float
    budgets: list[int]
    template: str
    split: str
    groups: list[GroupProfile]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for group in data["groups"]:
            group["cells"] = {rule: {str(b): s for b, s in by.items()} for rule, by in group["cells"].items()}
            for by in group["cells"].values():
                for s in by.values():
                    s["majority_by_cluster"] = {str(c): v for c, v in s["majority_by_cluster"].items()}
        return data

    def format_table(self, rule: str | None = None, budget: int | None = None) -> str:
        k = self.samples
        head = (f"| group | rule | tokens | n | greedy | pass@1 T={self.temperature:g} | maj@{k} | parsed | boxed "
                f"| mean tokens | kept 2-vote (maj acc) | kept 6-of-8 (maj acc) |")
        lines = [head, "|" + "---|" * 12]
        for g in self.groups:
            for r in RULES if rule is None else (rule,):
                for b in self.budgets if budget is None else (budget,):
                    s = g.cells[r][b]
                    lines.append(f"| {g.name} | {r} | {b} | {s.n} | {s.greedy:.2f} | {s.pass1:.2f} | {s.maj:.2f} "
                                 f"| {s.parsed:.2f} | {g.boxed:.2f} | {g.mean_tokens:.0f} "
                                 f"| {s.kept_2vote:.2f} ({_share(s.maj_acc_2vote)}) "
                                 f"| {s.kept_strict:.2f} ({_share(s.maj_acc_strict)}) |")
        return "\n".join(lines)


@torch.no_grad()
def sample_tokens(model: Any, tokenizer: Any, prompts: Sequence[str], *, samples: int, temperature: float | None,
                  max_new_tokens: int, batch_size: int = 64, dtype: torch.dtype = torch.float32,
                  seed: int = 0) -> list[list[list[int]]]:
    """The new token ids of `samples` completions per (already rendered) prompt, eos and padding cut off."""
    per = 1 if temperature is None else samples
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    out: list[list[list[int]]] = []
    for count, new_tokens in generate_new_tokens(model, tokenizer, prompts, samples=per, temperature=temperature,
                                                 max_new_tokens=max_new_tokens, batch_size=batch_size, dtype=dtype,
                                                 add_special_tokens=False, seed=seed):
        rows = [_until_stop(row.tolist(), stops) for row in new_tokens]
        out.extend(rows[i * per:(i + 1) * per] for i in range(count))
    return out


def profile_model(model: Any, tokenizer: Any, groups: Mapping[str, Sequence[Problem]], *, model_name: str,
                  template: str = "default", samples: int = 8, temperature: float = 0.6,
                  budgets: Sequence[int] = (96,), batch_size: int = 64, dtype: torch.dtype = torch.float32,
                  seed: int = 0, split: str = "validation", progress: bool = True) -> ModelProfile:
    """Profile `model` on each named group of problems (they must carry answers)."""
    from agents.policy import render_prompts
    from cuma_env.prompting import format_prompt

    budgets = sorted(set(int(b) for b in budgets))
    if not budgets or budgets[0] < 1 or samples < 1 or temperature <= 0:
        raise ValueError("budgets must be >= 1 tokens, samples >= 1 and temperature > 0")
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    results = []
    try:
        for index, (name, problems) in enumerate(groups.items()):
            prompts = render_prompts(tokenizer, [format_prompt(p, template) for p in problems])
            longest = budgets[-1]
            greedy = sample_tokens(model, tokenizer, prompts, samples=1, temperature=None, max_new_tokens=longest,
                                   batch_size=batch_size, dtype=dtype)
            sampled = sample_tokens(model, tokenizer, prompts, samples=samples, temperature=temperature,
                                    max_new_tokens=longest, batch_size=batch_size, dtype=dtype,
                                    seed=seed * 1000 + index)
            results.append(_group_profile(name, problems, greedy, sampled, tokenizer, budgets, samples))
            if progress:
                print(f"[cuma] profiled {name} ({len(problems)} problems) at {time.perf_counter() - started:.0f} s",
                      flush=True)
    finally:
        model.train(was_training)
    return ModelProfile(model=model_name, samples=samples, temperature=temperature, budgets=budgets,
                        template=template, split=split, groups=results, seconds=time.perf_counter() - started)


def _group_profile(name: str, problems: Sequence[Problem], greedy: list, sampled: list, tokenizer: Any,
                   budgets: list[int], samples: int) -> GroupProfile:
    longest = budgets[-1]
    full = [[tokenizer.decode(ids, skip_special_tokens=True) for ids in group] for group in sampled]
    completions = [len(ids) for group in sampled for ids in group]
    profile = GroupProfile(
        name=name, n=len(problems), boxed=_mean(["\\boxed{" in t for g in full for t in g]),
        finished=_mean([n < longest for n in completions]), mean_tokens=_mean(completions))
    strict = max(2, -(-int(STRICT_SHARE * samples * 100) // 100))
    for rule in RULES:
        fallback = rule == "fallback"
        profile.cells[rule] = {}
        for budget in budgets:
            g_hits, p_hits, m_hits, parsed, kept2, kept_s, acc2, acc_s = 0, 0, 0, 0, 0, 0, [], []
            by_cluster: dict[int, list[int]] = {}
            for problem, g_ids, group in zip(problems, greedy, sampled):
                g_text = tokenizer.decode(g_ids[0][:budget], skip_special_tokens=True)
                g_hits += matches_reference(extract_answer(g_text, last_number_fallback=fallback), problem.answer)
                texts = [tokenizer.decode(ids[:budget], skip_special_tokens=True) for ids in group]
                answers = [extract_answer(t, last_number_fallback=fallback) for t in texts]
                parsed += sum(a is not None for a in answers)
                p_hits += sum(a is not None and matches_reference(a, problem.answer) for a in answers)
                vote = majority_vote(answers, min_votes=2)
                right = vote.label is not None and bool(matches_reference(vote.label, problem.answer))
                m_hits += right
                by_cluster.setdefault(int(vote.count), []).append(int(right))
                if vote.count >= 2:
                    kept2 += 1
                    acc2.append(right)
                if vote.count >= strict:
                    kept_s += 1
                    acc_s.append(right)
            n = len(problems)
            profile.cells[rule][budget] = RuleStats(
                n=n, greedy=g_hits / n, pass1=p_hits / (n * samples), maj=m_hits / n, parsed=parsed / (n * samples),
                kept_2vote=kept2 / n, kept_strict=kept_s / n, maj_acc_2vote=_mean(acc2) if acc2 else None,
                maj_acc_strict=_mean(acc_s) if acc_s else None,
                majority_by_cluster={c: {"groups": len(v), "majority_acc": _mean(v)}
                                     for c, v in sorted(by_cluster.items())})
    return profile


def _until_stop(ids: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(ids):
        if token in stops:
            return ids[:i]
    return ids


def _mean(values: Sequence[float | bool | int]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
