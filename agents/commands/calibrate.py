"""`cuma calibrate`: label-free difficulty calibration of problems for a target model.

Samples --n-samples answers per problem from the model, measures agreement (largest answer cluster / N) and
the mask (no answer twice), and assigns a measured level by agreement bands (default: L1 >= 0.8, L2 >= 0.55,
L3 >= 0.4, L4 >= 0.3, L5 below or masked; see curricula/calibration.py). No label is read to measure; when
records carry an `answer`, the report also says how well agreement predicts a correct majority.

  cuma calibrate --data arith --per-level 100 --out cal/                 # the procedural family, tiny base
  cuma calibrate --model Qwen/Qwen2.5-0.5B --data curated.jsonl --device cuda --max-new-tokens 3072 --out cal/

--data is `arith` (the procedural family, first --per-level problems of each level of --arith-split) or a
JSONL in the pools' layout (`problem`, `level`, optional `answer`; e.g. `cuma curate` output). Writes under
--out (default runs/calibrate-<date>-<time>): calibrated.jsonl (input records + measured_level, agreement,
masked, majority, n_samples, and majority_correct / sample_accuracy when an answer exists), calibration.md
(table), calibration.png (requested vs measured heatmap + agreement per level), calibration.json (summary +
settings).
Train on the output with `cuma train env.pool.kind=file env.pool.path=OUT/calibrated.jsonl
env.pool.level_field=measured_level` (or, in Python, `curricula.mixing.measured_source(path)`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cuma_env.voting import DEFAULT_MIN_VOTES
    from curricula.calibration import DEFAULT_BANDS

    parser = subparsers.add_parser("calibrate", help="measure problem difficulty for a model by answer agreement",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", metavar="PATH",
                        help="tiny (the embedded base, default) | model directory | hub id")
    parser.add_argument("--data", required=True, metavar="FILE|arith", help="a pool JSONL, or `arith`")
    parser.add_argument("--n-samples", type=int, default=8, help="answers sampled per problem (default 8)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: 48 for arith, 1024 otherwise")
    parser.add_argument("--per-level", type=int, default=None, metavar="N",
                        help="at most N problems per requested level (default: 100 for arith, all for a file)")
    parser.add_argument("--arith-split", default="train", choices=("train", "validation", "test"),
                        help="split of the procedural family (default train: calibrated problems are for training)")
    parser.add_argument("--bands", default=",".join(f"{t:g}" for t in DEFAULT_BANDS), metavar="T1,T2,T3,T4",
                        help="agreement thresholds of levels 1-4 (default %(default)s)")
    parser.add_argument("--min-votes", type=float, default=DEFAULT_MIN_VOTES,
                        help="mask threshold: a count (2) or a share of N (0.75) (default %(default)s)")
    parser.add_argument("--prompt-template", default=None, choices=("compact", "default"),
                        help="default: compact for arith, default otherwise")
    parser.add_argument("--no-chat-template", action="store_true",
                        help="send the prompt text as is (default: through the tokenizer's chat template, as the "
                             "training env does)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default runs/calibrate-<date>-<time>)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="autocast precision (default auto: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=512, help="sequences per generate call (default 512)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _min_votes(args: argparse.Namespace) -> int | float:
    from agents.commands import min_votes_option

    return min_votes_option(args.min_votes, args.n_samples, "--n-samples")


def _check(args: argparse.Namespace) -> None:
    """The numeric options: `ValueError` naming the first bad one."""
    if args.n_samples < 2:
        raise ValueError(f"--n-samples must be >= 2 to measure agreement, got {args.n_samples}")
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")
    for name in ("per_level", "max_new_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def run(args: argparse.Namespace) -> int:
    from agents.calibration import ARITH_PER_LEVEL, calibrate_model, default_max_new_tokens, load_model, load_records
    from agents.commands import fail
    from curricula.calibration import Bands, format_report, summarize, write_report

    try:
        _check(args)
        min_votes = _min_votes(args)
        bands = Bands.parse(args.bands)
        records, default_template, is_arith = load_records(args.data, args.per_level, arith_split=args.arith_split)
    except (ValueError, OSError) as exc:  # also an unreadable data file
        return fail("calibrate", exc)
    from agents.policy import BackendUnavailable

    try:
        model, tokenizer, device, dtype = load_model(args.model, args.device, args.dtype)
    except (ValueError, OSError, BackendUnavailable) as exc:  # no such model, no CUDA
        return fail("calibrate", exc)
    out = args.out or Path("runs") / f"calibrate-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)  # before sampling: a bad --out must not waste the run
    except OSError as exc:
        return fail("calibrate", f"--out {out}: {exc.strerror or exc}")
    template = args.prompt_template or default_template
    max_new = args.max_new_tokens if args.max_new_tokens is not None else default_max_new_tokens(is_arith)
    started = time.perf_counter()
    try:
        calibrated = calibrate_model(records, model, tokenizer, template=template, n_samples=args.n_samples,
                                     temperature=args.temperature, top_p=args.top_p, max_new_tokens=max_new,
                                     batch_size=args.batch_size, chat_template=not args.no_chat_template,
                                     bands=bands, min_votes=min_votes, seed=args.seed, dtype=dtype,
                                     progress=not args.no_progress)
    except ValueError as exc:  # a record without problem text
        return fail("calibrate", exc)
    seconds = time.perf_counter() - started
    summary = summarize(calibrated, bands)
    title = f"Difficulty calibration: {args.model} on {args.data} (N={args.n_samples}, T={args.temperature:g})"
    meta = {"model": args.model, "data": args.data, "n_samples": args.n_samples, "temperature": args.temperature,
            "top_p": args.top_p, "max_new_tokens": max_new, "template": template, "seed": args.seed,
            "per_level": args.per_level or (ARITH_PER_LEVEL if is_arith else None),
            "arith_split": args.arith_split if is_arith else None, "min_votes": min_votes,
            "chat_template": not args.no_chat_template, "device": str(device), "seconds": round(seconds, 2)}
    paths = write_report(calibrated, summary, out, meta=meta, title=title)
    print(format_report(summary, title))
    print(f"{len(calibrated)} problems in {seconds:.1f} s; wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.calibrate ...` (the same as `cuma calibrate ...`)."""
    from agents.commands import run_standalone

    return run_standalone("calibrate", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
