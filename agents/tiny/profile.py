"""Per-level statistics of a base model on the procedural arithmetic held-out split.

For each level: greedy pass@1; sampled pass@1 at temperature T (k samples per problem); maj@k (the
plurality answer of the k samples is right; unparseable answers never vote); the masked share (CuMa's mask:
no answer occurs twice); and the majority's accuracy by the size of the largest cluster, which says whether
agreement is informative at that level; and which route the completions take (`agents.tiny.corpus`): the
share of greedy and of sampled completions that write worked steps before the answer, and the sampled
pass@1 with steps and with a bare answer, which says whether reasoning is latent in the base (right more
often, taken rarely). Generation: `agents.generation`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from agents.generation import generate_texts
from agents.tiny.corpus import MAX_COMPLETION_TOKENS, writes_steps
from cuma_env.answers import matches_reference
from cuma_env.arithmetic import ArithmeticSource
from cuma_env.problems import LEVELS
from cuma_env.prompting import format_prompt

EVAL_SPLIT = "test"  # the held-out split of the arithmetic family


@dataclass
class LevelStats:
    level: int
    n: int                    # problems evaluated (the level's held-out size caps it: level 1 has ~20)
    greedy: float             # greedy pass@1
    pass1: float              # sampled pass@1 at the temperature, mean over k samples
    maj: float                # maj@k: plurality answer of the k samples is right
    masked: float             # share of groups whose largest cluster < 2 (CuMa masks them)
    unanimous: float          # share of groups where all k samples agree (and parse)
    no_answer: float          # share of sampled completions with no extractable answer
    greedy_steps: float = 0.0  # share of greedy completions that write worked steps before the answer
    steps: float = 0.0         # share of sampled completions that do
    steps_pass1: float | None = None  # sampled pass@1 of the completions with steps (None: there were none)
    bare_pass1: float | None = None   # sampled pass@1 of the answered completions without steps
    # largest-cluster size -> {"groups": count, "majority_acc": accuracy of the plurality answer}
    majority_by_cluster: dict[int, dict[str, float]] = field(default_factory=dict)


@dataclass
class BaseReport:
    levels: list[LevelStats]
    temperature: float
    samples: int
    n_per_level: int
    seed: int
    split: str
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def level(self, level: int) -> LevelStats:
        return next(s for s in self.levels if s.level == level)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for stats in data["levels"]:
            stats["majority_by_cluster"] = {str(k): v for k, v in stats["majority_by_cluster"].items()}
        return data

    def majority_gain(self) -> dict[int, float]:
        """maj@k minus greedy pass@1 per level: what a majority-vote label could teach greedy decoding.

        A label-free reward can only raise greedy accuracy where the model's own plurality answer beats its
        greedy answer. With many samples (`--samples 64`) maj@k estimates the mode of the sampled answers.
        On the earlier bare-answer base it sat at or below greedy on every level; on the default base, whose
        worked steps are latent, it beats greedy on levels 2-4 (docs/label-free-tiny-world.md).
        """
        return {s.level: s.maj - s.greedy for s in self.levels}

    def majority_verdict(self, margin: float = 0.02) -> str:
        """One line: the levels whose majority beats greedy by more than `margin`, or that none does."""
        gain = self.majority_gain()
        shown = " ".join(f"L{lv} {g:+.2f}" for lv, g in gain.items())
        better = [lv for lv, g in gain.items() if g > margin]
        if better:
            verdict = f"majority labels beat greedy on levels {better}"
        else:
            verdict = ("majority labels beat greedy on no level: a majority-vote reward has little to teach "
                       "greedy decoding here")
        return f"maj@{self.samples} - greedy: {shown}; {verdict}"

    def format_table(self) -> str:
        k, t = self.samples, self.temperature
        head = (f"| level | n | greedy | pass@1 T={t:g} | maj@{k} | masked | unanimous | no answer "
                f"| steps greedy/sampled | pass@1 steps/bare | majority acc by largest cluster (size: acc/groups) |")
        lines = [head, "|" + "---|" * 11]
        for s in self.levels:
            by = ", ".join(f"{c}: {v['majority_acc']:.2f}/{int(v['groups'])}"
                           for c, v in sorted(s.majority_by_cluster.items()))
            lines.append(f"| {s.level} | {s.n} | {s.greedy:.2f} | {s.pass1:.2f} | {s.maj:.2f} | {s.masked:.2f} "
                         f"| {s.unanimous:.2f} | {s.no_answer:.2f} | {s.greedy_steps:.2f}/{s.steps:.2f} "
                         f"| {_share(s.steps_pass1)}/{_share(s.bare_pass1)} | {by} |")
        return "\n".join(lines)


def generate_completions(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], *,
                         samples: int = 1, temperature: float | None = None,
                         max_new_tokens: int = MAX_COMPLETION_TOKENS, batch_size: int = 512,
                         seed: int | None = None) -> list[list[str]]:
    """`agents.generation.generate_texts` with the tiny base's settings: its longest completion, prompts as
    given (no chat template) and encoded without special tokens (the tiny base has no BOS)."""
    return generate_texts(model, tokenizer, prompts, samples=samples, temperature=temperature,
                          max_new_tokens=max_new_tokens, batch_size=batch_size, add_special_tokens=False, seed=seed)


def evaluate_base(model, tokenizer: PreTrainedTokenizerBase, *, n_per_level: int = 200,
                  levels: Sequence[int] = LEVELS, temperature: float = 0.6, samples: int = 8, seed: int = 0,
                  split: str = EVAL_SPLIT, template: str = "compact", max_new_tokens: int = MAX_COMPLETION_TOKENS,
                  batch_size: int = 512, num_threads: int | None = 1) -> BaseReport:
    """Evaluate `model` per level on the first `n_per_level` problems of `ArithmeticSource(split, seed)`."""
    from cuma_env.answers import extract_answer
    from cuma_env.voting import majority_vote

    if n_per_level < 1 or samples < 1 or temperature <= 0:
        raise ValueError("n_per_level and samples must be >= 1 and temperature > 0")
    start = time.perf_counter()
    previous_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    was_training = model.training
    model.eval()
    source = ArithmeticSource(split=split, seed=seed)
    results = []
    try:
        for level in levels:
            n = min(n_per_level, source.size(level))
            problems = [source.get(level, i) for i in range(n)]
            prompts = [format_prompt(p, template) for p in problems]
            greedy = generate_completions(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                          batch_size=batch_size)
            sampled = generate_completions(model, tokenizer, prompts, samples=samples, temperature=temperature,
                                           max_new_tokens=max_new_tokens, batch_size=batch_size,
                                           seed=seed * 1000 + level)  # each level's draws its own
            greedy_hits = maj_hits = masked = unanimous = no_answer = greedy_steps = 0
            route_hits = {True: [0, 0], False: [0, 0]}  # writes steps -> [right, answered completions]
            by_cluster: dict[int, list[int]] = {}
            for problem, g, group in zip(problems, greedy, sampled):
                greedy_hits += matches_reference(extract_answer(g[0]), problem.answer)
                greedy_steps += writes_steps(g[0])
                answers = [extract_answer(text) for text in group]
                no_answer += sum(a is None for a in answers)
                for text, answer in zip(group, answers):  # each answer graded once (equivalence is not free)
                    if answer is not None:
                        hits = route_hits[writes_steps(text)]
                        hits[0] += matches_reference(answer, problem.answer)
                        hits[1] += 1
                vote = majority_vote(answers, min_votes=2)  # label = plurality answer even when masked
                masked += bool(vote.masked)
                right = vote.label is not None and matches_reference(vote.label, problem.answer)
                maj_hits += right
                unanimous += vote.count == samples
                by_cluster.setdefault(int(vote.count), []).append(int(right))
            results.append(LevelStats(
                level=level, n=n, greedy=greedy_hits / n,
                pass1=(route_hits[True][0] + route_hits[False][0]) / (n * samples), maj=maj_hits / n,
                masked=masked / n, unanimous=unanimous / n, no_answer=no_answer / (n * samples),
                greedy_steps=greedy_steps / n, steps=route_hits[True][1] / (n * samples),
                steps_pass1=_rate(*route_hits[True]), bare_pass1=_rate(*route_hits[False]),
                majority_by_cluster={c: {"groups": len(v), "majority_acc": sum(v) / len(v)}
                                     for c, v in sorted(by_cluster.items())}))
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    return BaseReport(levels=results, temperature=temperature, samples=samples, n_per_level=n_per_level,
                      seed=seed, split=split, seconds=time.perf_counter() - start)


def base_identity(meta: dict) -> str:
    """Whether a base's numbers can be compared with the published ones (a local build of the default
    config on another CPU is another base)."""
    from agents.tiny.published import PUBLISHED

    record = PUBLISHED.get(meta.get("key", ""))
    if record is None:
        return "no published weights for this config: compare this hash before comparing numbers"
    if meta.get("weights_sha256") == record["weights_sha256"]:
        return "the published base: docs/results/ numbers on the current split are for these weights"
    return (f"NOT the published base {record['weights_sha256'][:16]}: numbers will differ from docs/results/; "
            "`cuma base --rebuild` installs the published one")


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
