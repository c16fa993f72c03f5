"""`cuma base`: build (or load from the cache) the embedded tiny base model and print its per-level profile.

    cuma base                       # default base (seed 0), 200 held-out problems per level
    cuma base --seed 1 --out runs/base-s1 --n-per-level 100
    cuma base --split validation    # profile on the tuning split (design choices never read test)
    cuma base --rebuild             # build again and replace the cache entry
    cuma base --train               # train the default base on this machine instead of installing it
    cuma base --steps 700 --reasoning-share 0 --unanswered-share 0,0,0,0,0   # the earlier bare-answer base
    cuma base --model smollm2-135m --split validation --n-per-level 24 --budgets 64,96,192
                                    # a real LLM (or a model directory): pass@1, maj@8, parse and mask rates
                                    # under each answer rule and token budget (agents.model_profile)
    cuma base --study docs/results/study --n-per-level 16
                                    # each world's diagnostic on validation vs the study's measured gains:
                                    # Spearman rho over worlds (agents.experiments.trainability_study)

Every profile ends with the trainability diagnostic (agents.experiments.trainability): per level maj@k - greedy,
parse rate, agreement, the 2-vote and 6-of-8 kept shares, and the predicted room for a label-free gain.

The default base is installed from the weights published with the package (the same base on every
machine: a rebuild on another CPU gives other weights); other seeds or steps are trained here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "base", help="build or load the embedded tiny base model and print its per-level profile",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny",
                        help="tiny (default: the embedded base), smollm2-135m, or a model directory / hub id: "
                             "any model other than tiny is profiled through its chat template")
    parser.add_argument("--budgets", type=_budgets, default=None, metavar="B1,B2,...",
                        help="--model only: token budgets to report (one generation at the largest; default 96)")
    parser.add_argument("--template", default="default",
                        help="--model only: prompt template (default, compact, or a string with {problem})")
    parser.add_argument("--levels", type=_budgets, default=None, metavar="L1,L2,...",
                        help="--model only: the arithmetic levels profiled (default 1,2,3,4,5)")
    parser.add_argument("--bench", default=None, metavar="B1,B2",
                        help="--model only: also profile the first --n-per-level problems of these benches (e.g. "
                             "gsm8k,math500; `cuma eval --help` lists them), each in its own prompt template")
    parser.add_argument("--threads", type=int, default=None,
                        help="--model and --study only: torch threads (default: the cores this process may use "
                             "with --model, 1 with --study)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the base model (default 0)")
    parser.add_argument("--steps", type=int, default=None,
                        help="warm-up steps (default: the TinyBaseConfig default; another value is another base)")
    parser.add_argument("--reasoning-share", type=float, default=None,
                        help="share of answered warm-up completions that write worked steps first (default: "
                             "the TinyBaseConfig default; another value is another base)")
    parser.add_argument("--unanswered-share", type=_shares, default=None, metavar="S1,...,S5",
                        help="per level, the share of warm-up completions with no answer (default: the "
                             "TinyBaseConfig default)")
    parser.add_argument("--out", type=Path, default=None, help="directory to write base_profile.json into")
    parser.add_argument("--n-per-level", type=int, default=200, help="held-out problems per level (default 200)")
    parser.add_argument("--split", choices=("train", "validation", "test"), default=None,
                        help="the arithmetic split profiled (default test, validation with --study; validation "
                             "while designing a base)")
    parser.add_argument("--study", type=Path, default=None, metavar="DIR",
                        help="a finished `cuma study` directory: profile each world's base and rank-correlate the "
                             "diagnostic with the study's measured gains (writes trainability.json/.md to --out, "
                             "default DIR); the voting arms' cells give samples, temperature, budget and levels")
    parser.add_argument("--build", action="store_true",
                        help="--study only: train the worlds' bases that are not cached (minutes each)")
    parser.add_argument("--samples", type=int, default=8, help="samples per problem for pass@1/maj@k (default 8)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    parser.add_argument("--eval-seed", type=int, default=0, help="seed of the held-out order and sampling")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="cache root (default $CUMA_CACHE_DIR or ~/.cache/cuma)")
    parser.add_argument("--rebuild", action="store_true", help="build again even if the base is cached")
    parser.add_argument("--train", action="store_true",
                        help="train the base on this machine, even where published weights exist (replaces the "
                             "cache entry; another CPU's float kernels give other weights)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while training")
    return parser


def run(args: argparse.Namespace) -> int:
    from agents.commands import check_out_file, fail

    if args.n_per_level < 1 or args.samples < 1 or args.temperature <= 0:
        return fail("base", f"--n-per-level and --samples must be >= 1 and --temperature > 0, got "
                            f"{args.n_per_level}, {args.samples} and {args.temperature:g}")
    if args.study is not None:
        return _run_study(args)
    if args.build:
        return fail("base", "--build goes with --study (it trains the study's uncached bases)")
    args.split = args.split or "test"
    if args.model != "tiny":
        return _run_model(args)
    from agents.experiments.trainability import STRICT_SHARE, diagnose, format_diagnosis
    from agents.tiny.cache import ensure_tiny_base, read_metadata
    from agents.tiny.config import TinyBaseConfig
    from agents.tiny.model import count_parameters, load_tiny_base
    from agents.tiny.profile import base_identity, evaluate_base

    changes = {"seed": args.seed}
    for name in ("steps", "reasoning_share", "unanswered_share"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    try:
        config = TinyBaseConfig(**changes)
    except ValueError as error:
        return fail("base", error)
    out_file = None if args.out is None else args.out / "base_profile.json"
    made_out = args.out is not None and not args.out.exists()
    try:  # before training and evaluating: a bad --out or --cache-dir must not waste the run
        if out_file is not None:
            check_out_file(out_file)
    except OSError as exc:
        return fail("base", f"--out {args.out}: {exc.strerror or exc}")
    started = time.perf_counter()
    try:
        path = ensure_tiny_base(config, cache_dir=args.cache_dir, progress=not args.no_progress,
                                rebuild=args.rebuild or args.train, train=args.train)
    except OSError as exc:  # the cache folder cannot be created or written
        if made_out:
            with contextlib.suppress(OSError):
                args.out.rmdir()  # leave nothing behind (it is still empty)
        option = "" if args.cache_dir is None else f"--cache-dir {args.cache_dir}: "
        return fail("base", f"{option}{exc}")
    ready = time.perf_counter() - started
    meta = read_metadata(path)
    model, tokenizer = load_tiny_base(path)
    report = evaluate_base(model, tokenizer, n_per_level=args.n_per_level, temperature=args.temperature,
                           samples=args.samples, seed=args.eval_seed, split=args.split)
    print(f"tiny base: {path}")
    where = (f"published weights, trained on {meta.get('trained_on')}" if meta.get("source") == "published"
             else "trained on this machine")
    print(f"  {count_parameters(model):,} parameters, seed {config.seed}, {config.steps} warm-up steps "
          f"(worked steps in {config.reasoning_share:g} of answers, unanswered per level "
          f"{','.join(f'{v:g}' for v in config.unanswered_share)}), "
          f"{where} in {meta['train_seconds']:.0f} s (ready in {ready:.1f} s this time), "
          f"final loss {meta['final_loss']:.3f}")
    print(f"  weights sha256 {meta.get('weights_sha256', '?')[:16]} ({base_identity(meta)})")
    print(f"  held-out split '{report.split}', up to {report.n_per_level} problems per level, "
          f"{report.samples} samples at T={report.temperature:g}; evaluated in {report.seconds:.1f} s")
    print(report.format_table())
    print(report.majority_verdict())
    print(format_diagnosis(report))
    if out_file is not None:
        payload = {"base_path": str(path), "base": meta, "profile": report.to_dict(),
                   "trainability": {mask: diagnose(report, mask=mask) for mask in (2, STRICT_SHARE)}}
        out_file.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {out_file}")
    return 0


def _run_model(args: argparse.Namespace) -> int:
    """`cuma base --model NAME`: the profile of a pretrained chat model on the arithmetic split."""
    import os

    import torch

    from agents.commands import check_out_file, fail
    from agents.experiments.trainability import STRICT_SHARE, diagnose, format_diagnosis
    from agents.model_profile import RULES, profile_model
    from agents.policy import load_model
    from cuma_env.arithmetic import ArithmeticSource
    from cuma_env.problems import LEVELS
    from cuma_env.prompting import resolve_template

    levels = args.levels or list(LEVELS)
    benches = {}
    try:
        resolve_template(args.template)
        for bench in filter(None, (args.bench or "").split(",")):
            from agents.evaluation import bench_problems

            by_level, template = bench_problems(bench.strip())
            benches[bench.strip()] = ([p for ps in by_level.values() for p in ps][:args.n_per_level], template)
        if not set(levels) <= set(LEVELS):
            raise ValueError(f"--levels must be among {list(LEVELS)}, got {levels}")
        if args.out is not None:
            check_out_file(args.out / "base_profile.json")
    except (OSError, ValueError, LookupError) as exc:  # a bad bench name, its data folder missing
        return fail("base", exc)
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    try:
        model, tokenizer = load_model(args.model, torch.device("cpu"))
    except (OSError, RuntimeError, ValueError) as exc:  # a failed fetch, a missing directory
        return fail("base", f"--model {args.model}: {exc}")
    source = ArithmeticSource(split=args.split, seed=args.eval_seed)
    groups = {f"L{lv}": [source.get(lv, i) for i in range(min(args.n_per_level, source.size(lv)))] for lv in levels}
    settings = dict(model_name=args.model, samples=args.samples, temperature=args.temperature,
                    budgets=args.budgets or (96,), seed=args.eval_seed, split=args.split, progress=not args.no_progress)
    profile = profile_model(model, tokenizer, groups, template=args.template, **settings)
    for bench, (problems, template) in benches.items():  # each bench in its own template, on its test split
        profile.groups += profile_model(model, tokenizer, {bench: problems}, template=template, **settings).groups
    print(f"{args.model}: {sum(p.numel() for p in model.parameters()):,} parameters; split '{args.split}', "
          f"{args.samples} samples at T={args.temperature:g}, template {args.template!r}; {profile.seconds:.0f} s")
    print(profile.format_table())
    levels_run = [f"L{lv}" for lv in levels]
    for rule in RULES:  # the diagnostic on the arithmetic levels, at the largest budget
        print(format_diagnosis(profile, rule=rule, levels=levels_run))
    if args.out is not None:
        out_file = args.out / "base_profile.json"
        trainability = {rule: {mask: diagnose(profile, mask=mask, rule=rule, levels=levels_run)
                               for mask in (2, STRICT_SHARE)} for rule in RULES}
        out_file.write_text(json.dumps({"model": args.model, "profile": profile.to_dict(),
                                        "trainability": trainability}, indent=2) + "\n")
        print(f"wrote {out_file}")
    return 0


def _run_study(args: argparse.Namespace) -> int:
    """`cuma base --study DIR`: the diagnostic of each world's base against the study's measured gains."""
    from agents.commands import check_out_file, fail
    from agents.experiments.trainability_study import (
        StudyDirError,
        format_study_trainability,
        study_trainability,
        write_study_trainability,
    )

    split = args.split or "validation"
    out = args.out if args.out is not None else args.study
    if args.model != "tiny":
        return fail("base", "--study reads each world's base from the study; leave out --model")
    try:
        if split == "test":
            raise StudyDirError("--study profiles the bases on validation: the study measured its gains on test")
        if not (args.study / "study.json").is_file():
            raise StudyDirError(f"--study {args.study}: no study.json there (give a finished study's directory)")
        check_out_file(out / "trainability.json")
        result = study_trainability(args.study, n_per_level=args.n_per_level, split=split, build=args.build,
                                    seed=args.eval_seed, threads=args.threads or 1, cache_dir=args.cache_dir,
                                    log=(lambda _: None) if args.no_progress else print)
    except (OSError, ValueError) as exc:  # StudyDirError is a ValueError
        return fail("base", exc)
    command = (f"cuma base --study {args.study} --split {split} --n-per-level {args.n_per_level}"
               f"{' --build' if args.build else ''} --threads {args.threads or 1}")
    print(format_study_trainability(result), end="")
    for path in write_study_trainability(out, result, command):
        print(f"wrote {path}")
    return 0


def _budgets(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,96,192, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _shares(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as 0,0,0.1,0.4,0.6, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.base ...` (the same as `cuma base ...`)."""
    from agents.commands import run_standalone

    return run_standalone("base", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
