"""Grading benchmark: group voting speed and merging accuracy, three ways, side by side in one process.

    python benchmarks/bench_grading.py [--groups 500] [--group-size 8] [--seed 0]

Builds realistic groups from MATH-500 answers (`$CUMA_DATA_DIR/math/math500_test.jsonl`, default
../shared/data next to the repository): each group holds short completions whose boxed answers are the
gold in varied *equivalent* renderings (`\\frac{a}{b}`, `a/b`, decimals, `\\dfrac`, spaces, `\\left(`,
`x =`, `\\text{}` units, thousands separators, degrees) mixed with wrong answers (other problems' answers,
perturbed numbers, swapped tuples), with a known value id per answer. Then it votes with
  (a) TTRL-style exact-string voting after light normalisation,
  (b) pairwise math-verify clustering (parse each completion, verify against each cluster representative),
  (c) ours: `extract_answer` + `majority_vote`,
and prints throughput, the ratios ours/(a) and ours/(b), pairwise same-cluster accuracy, the false-merge
rate (different values put in one cluster) and label correctness (winning value == true majority value).
Ours runs with cold caches; the sympy worker is started before timing (its ~1 s start is a one-off).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
logging.disable(logging.WARNING)

from math_verify import parse, verify  # noqa: E402

from cuma_env.answers import equivalence, extract_answer, normalize, prewarm  # noqa: E402
from cuma_env.voting import majority_vote  # noqa: E402

_NUM = re.compile(r"-?\d+")
_FRAC = re.compile(r"(-?)\\[dt]?frac\s*\{?(\d+)\}?\s*\{?(\d+)\}?")
_DEC = re.compile(r"-?\d*\.\d+")


def load_answers() -> list[str]:
    data = Path(os.environ.get("CUMA_DATA_DIR") or REPO.parent / "shared" / "data")
    path = data / "math" / "math500_test.jsonl"
    if not path.is_file():
        sys.exit(f"MATH-500 not found at {path}; set CUMA_DATA_DIR to the folder holding math/math500_test.jsonl")
    with path.open() as fh:
        return [json.loads(line)["answer"] for line in fh]


def value(ans: str) -> Fraction | None:
    """The bench's own exact value of a plain numeric gold (independent of the library under test)."""
    s = re.sub(r"^[a-z]\s*=", "", ans.strip()).replace("\\!", "").replace("{,}", "").replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", s):
        s = s.replace(",", "")
    if _NUM.fullmatch(s) or _DEC.fullmatch(s):
        return Fraction(s)
    m = _FRAC.fullmatch(s)
    if m and int(m.group(3)) != 0:
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return -v if m.group(1) else v
    return None


def numeric_forms(v: Fraction) -> list[str]:
    forms = []
    if v.denominator == 1:
        n = v.numerator
        forms += [f"{n}", f"{n}.0", f"x = {n}", f"{n}\\text{{ units}}", f"{n} \\text{{cm}}"]
        if abs(n) >= 1000:
            forms += [f"{n:,}", f"{n:,}".replace(",", "{,}"), f"{n:,}".replace(",", "\\!,\\!")]
    else:
        p, q = v.numerator, v.denominator
        sign, ap = ("-" if p < 0 else ""), abs(p)
        forms += [f"{p}/{q}", f"{sign}\\frac{{{ap}}}{{{q}}}", f"{sign}\\dfrac{{{ap}}}{{{q}}}", f"\\frac{{{p}}}{{{q}}}"]
        if ap < 10 and q < 10:
            forms.append(f"{sign}\\frac{ap}{q}")
        q2 = q
        for f in (2, 5):
            while q2 % f == 0:
                q2 //= f
        if q2 == 1:
            forms.append(str(float(v)))
        forms.append(f"x = {sign}\\frac{{{ap}}}{{{q}}}")
    return forms


def renderings(gold: str) -> list[str]:
    """Equivalent spellings of a gold answer (ground truth by construction)."""
    g = gold.strip()
    forms = [g]
    v = value(g)
    if v is not None:
        forms += numeric_forms(v)
    if "\\frac" in g:
        forms.append(g.replace("\\frac", "\\dfrac"))
    spaced = re.sub(r"\s*([+\-=])\s*" if v is not None else r"\s*([+\-,=])\s*", r" \1 ", g).strip()
    if spaced != g:
        forms.append(spaced)
    plain = g.replace("\\left", "").replace("\\right", "")
    if plain.startswith("(") and plain.endswith(")"):
        forms += [plain, "\\left(" + plain[1:-1] + "\\right)"]
    if "^\\circ" in g:
        forms += [g.replace("^\\circ", ""), g.replace("^\\circ", "^{\\circ}")]
    m = re.fullmatch(r"\\text\{(.*)\}", g)
    if m:
        forms.append(m.group(1))
    if v is None and "=" not in g and "," not in g and "\\text" not in g and "\\begin" not in g:
        forms.append("y = " + g)
    return list(dict.fromkeys(forms))


def wrong_values(i: int, golds: list[str], rng: random.Random) -> list[list[str]]:
    """Wrong answers for problem i, each a list of equivalent renderings of one wrong value."""
    g = golds[i].strip()
    v = value(g)
    out: list[list[str]] = []
    seen_values, seen_strings = {v}, {g}
    if v is not None:
        for w in sorted({v + 1, v - 1, 2 * v, v + Fraction(1, 2)} - {v}):
            out.append(numeric_forms(w)[:3])
            seen_values.add(w)
    m = re.fullmatch(r"\((-?\d+),\s*(-?\d+)\)", g)
    if m and m.group(1) != m.group(2):
        out.append([f"({m.group(2)},{m.group(1)})"])
    for _ in range(20):
        j = rng.randrange(len(golds))
        other = golds[j].strip()
        ov = value(other)
        if j == i or len(out) >= 6 or other in seen_strings or (ov is not None and ov in seen_values):
            continue
        seen_strings.add(other)
        seen_values.add(ov)
        if v is not None and ov is not None:
            out.append(renderings(other)[:2])
        elif v is None and ov is None and other != g:
            if not verify(parse(f"${g}$"), parse(f"${other}$")):  # setup only: keep truly different ones
                out.append([other])
        elif (v is None) != (ov is None):
            out.append([other])
    return out


def build_groups(golds: list[str], n_groups: int, size: int, seed: int):
    rng = random.Random(seed)
    groups = []
    for i in range(min(n_groups, len(golds))):
        right = renderings(golds[i])
        wrongs = wrong_values(i, golds, rng) or [["\\text{no}"]]
        n_right = rng.choice([0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 8])
        picked = rng.sample(wrongs, k=min(len(wrongs), rng.choice([1, 2, 3])))
        answers, truth = [], []
        for _ in range(n_right):
            answers.append(rng.choice(right))
            truth.append(0)
        while len(answers) < size:
            k = rng.randrange(len(picked))
            if rng.random() < 0.08:
                answers.append(None)
                truth.append(None)
            else:
                answers.append(rng.choice(picked[k]))
                truth.append(k + 1)
        order = list(range(size))
        rng.shuffle(order)
        answers = [answers[k] for k in order]
        truth = [truth[k] for k in order]
        completions = [
            "I could not finish this one." if a is None
            else f"Let us work it out step by step. Putting it together gives $\\boxed{{{a}}}$."
            for a in answers
        ]
        groups.append((completions, truth))
    return groups


# ------------------------------------------------------------------------------------------- the methods
def _light(s: str) -> str:
    s = s.replace("\\left", "").replace("\\right", "").replace("\\!", "").replace("\\dfrac", "\\frac")
    s = s.replace("\\tfrac", "\\frac").replace("$", "").replace(" ", "")
    return s.rstrip(".")


def _ttrl_extract(text: str) -> str:
    idx = text.rfind("\\boxed{")
    if idx < 0:
        return ""
    depth, start = 0, idx + len("\\boxed{")
    for k in range(start - 1, len(text)):
        depth += {"{": 1, "}": -1}.get(text[k], 0)
        if depth == 0:
            return text[start:k]
    return ""


def method_ttrl(completions: list[str]) -> list[int | None]:
    """Exact-string voting; as in TTRL an empty answer is a vote too (it gets its own cluster)."""
    ids: dict[str, int] = {}
    return [ids.setdefault(_light(_ttrl_extract(c)), len(ids)) for c in completions]


def method_mathverify(completions: list[str]) -> list[int | None]:
    reps: list = []
    out: list[int | None] = []
    for c in completions:
        p = parse(c)
        if not p:
            out.append(None)
            continue
        for k, rep in enumerate(reps):
            if verify(rep, p):
                out.append(k)
                break
        else:
            reps.append(p)
            out.append(len(reps) - 1)
    return out


def method_ours(completions: list[str]) -> list[int | None]:
    vote = majority_vote([extract_answer(c) for c in completions], min_votes=1)
    out: list[int | None] = [None] * len(completions)
    for cid, members in enumerate(vote.clusters):
        for m in members:
            out[m] = cid
    return out


def majority(ids: list[int | None]) -> int | None:
    counts: dict[int, int] = {}
    for x in ids:
        if x is not None:
            counts[x] = counts.get(x, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return next(x for x in ids if x is not None and counts[x] == best)


def score(groups, results):
    pairs = correct = diff = merged_diff = labels = label_ok = 0
    for (_, truth), ids in zip(groups, results):
        n = len(truth)
        for i in range(n):
            for j in range(i + 1, n):
                if truth[i] is None or truth[j] is None:
                    continue
                same_t, same_p = truth[i] == truth[j], ids[i] is not None and ids[i] == ids[j]
                pairs += 1
                correct += same_t == same_p
                if not same_t:
                    diff += 1
                    merged_diff += same_p
        true_major = majority(truth)
        if true_major is not None:
            labels += 1
            win = majority(ids)
            members = [truth[k] for k in range(n) if win is not None and ids[k] == win]
            label_ok += bool(members) and members[0] == true_major
    return correct / max(pairs, 1), merged_diff / max(diff, 1), label_ok / max(labels, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    golds = load_answers()
    groups = build_groups(golds, args.groups, args.group_size, args.seed)
    n_answers = sum(len(c) for c, _ in groups)
    prewarm(wait=True)
    parse("$1$")  # warm math-verify's parser in this process
    normalize.analyse.cache_clear()
    equivalence._fingerprint.cache_clear()
    equivalence._CACHE.data.clear()
    rows = {}
    for name, fn in (("(a) TTRL exact-string", method_ttrl), ("(b) math-verify pairwise", method_mathverify),
                     ("(c) ours majority_vote", method_ours)):
        t0 = time.perf_counter()
        results = [fn(c) for c, _ in groups]
        dt = time.perf_counter() - t0
        rows[name] = (dt, *score(groups, results))
    print(f"{len(groups)} groups x {args.group_size} answers = {n_answers} answers (MATH-500 golds, seed {args.seed})")
    print(f"{'method':28s} {'answers/s':>11s} {'groups/s':>10s} {'pair acc':>9s} {'false merge':>12s} "
          f"{'label acc':>10s}")
    for name, (dt, acc, fm, lab) in rows.items():
        print(f"{name:28s} {n_answers / dt:11.0f} {len(groups) / dt:10.1f} {acc:9.4f} {fm:12.4f} {lab:10.4f}")
    ours = rows["(c) ours majority_vote"][0]
    print(f"throughput ours/(a) = {rows['(a) TTRL exact-string'][0] / ours:.2f}x, "
          f"ours/(b) = {rows['(b) math-verify pairwise'][0] / ours:.1f}x")


if __name__ == "__main__":
    main()
