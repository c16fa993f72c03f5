"""`cuma eval`: pass@1 greedy, sampled pass@1 and maj@k per level of a model on a benchmark.

  cuma eval --model runs/demo/model --bench arith                  # the procedural test split, 400 per level
  cuma eval --model runs/demo/model --bench arith --split validation   # the split tuning choices read
  cuma eval --model runs/demo --bench arith                        # a run directory: its final or last weights
  cuma eval --model Qwen/Qwen2.5-0.5B --bench math500 --samples 8 --max-new-tokens 3072 --device cuda
  cuma eval --model tiny --bench gsm8k --n 200 --out evals/tiny

--model takes `tiny` (the embedded base), a model directory, a hub id, or a run directory of `cuma train`.
Benches are the tasks that name one (cuma_env/tasks/: one module each, installed plugins' too), or a task's
`module:Attr` path (`--bench my_words:TASK`, docs/extending.md); the file ones (math500, gsm8k, aime24, amc23)
read $CUMA_DATA_DIR (or --data-dir). Writes eval-<bench>.json and eval-<bench>.csv under --out
(default: the current directory).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(dict.fromkeys(int(x) for x in text.replace(" ", "").split(",") if x))
    except ValueError:
        levels = ()
    from cuma_env.problems import LEVELS

    if not levels or any(lv not in LEVELS for lv in levels):
        raise argparse.ArgumentTypeError(f"levels must be integers {LEVELS[0]}-{LEVELS[-1]} separated by commas, "
                                         f"got {text!r}")
    return levels


def add_parser(subparsers) -> argparse.ArgumentParser:
    from agents.evaluation import PROCEDURAL_DEFAULT_N, bench_names, benches

    parser = subparsers.add_parser("eval", help="pass@1 greedy and maj@k per level on a benchmark",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="PATH", help="tiny | model dir | hub id | run dir")
    parser.add_argument("--bench", required=True, metavar="BENCH",
                        help=f"{' | '.join(bench_names())} | module:Attr (a task of your own)")
    parser.add_argument("--split", default=None, help="a held-out split of the bench (default test; arith also has "
                        "validation, the one to tune on)")
    parser.add_argument("--samples", type=int, default=8,
                        help="k of maj@k and sampled pass@1 (default 8; 0: greedy only)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--n", type=int, default=None, metavar="N",
                        help=f"at most N problems per level (default: {PROCEDURAL_DEFAULT_N} for arith, whose level 5 "
                             "alone has ~146k test problems; all for the others)")
    parser.add_argument("--levels", type=_levels, default=None, metavar="L,L",
                        help="only these levels, e.g. 1,2 (levelled benches only: "
                             f"{', '.join(name for name, task in benches().items() if task.levelled)})")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="default: 48 for arith (the tiny base's longest worked steps fit), 1024 for the others")
    parser.add_argument("--batch-size", type=int, default=256, help="sequences per generate call (default 256)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="autocast precision (default auto: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--backend", default="transformers", choices=("transformers", "vllm"))
    parser.add_argument("--boxed-only", action="store_true",
                        help="only a marked answer (\\boxed{} or an answer phrase) counts, not the last number of "
                             "unmarked text (env.last_number_fallback=false, as the smollm2 presets train)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="benchmark data folder (default $CUMA_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR", help="where to write results")
    return parser


def _check(args: argparse.Namespace) -> None:
    """The numeric options: `ValueError` naming the first bad one."""
    if args.samples < 0:
        raise ValueError(f"--samples must be >= 0 (0: greedy only), got {args.samples}")
    for name in ("n", "batch_size", "max_new_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be > 0 (sampled pass@1 and maj@k sample), got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {args.top_p}")


def run(args: argparse.Namespace) -> int:
    from agents.commands import fail
    from agents.config import ModelConfig, RolloutConfig
    from agents.evaluation import (
        bench_problems,
        bench_task,
        context_overflow,
        default_max_new_tokens,
        default_n,
        evaluate,
        format_table,
        resolve_model,
        write_results,
    )

    try:
        args.bench = bench_task(args.bench).bench  # a module:Attr path: its task's bench name (file names)
        _check(args)
        model_path, state = resolve_model(args.model)
        n = args.n if args.n is not None else default_n(args.bench)
        problems, template = bench_problems(args.bench, n, levels=args.levels, data_dir=args.data_dir, seed=0,
                                            split=args.split)
    except (ValueError, OSError) as exc:  # also an unreadable data file
        return fail("eval", exc)
    from agents.policy import BackendUnavailable, build_policy

    max_new = args.max_new_tokens or default_max_new_tokens(args.bench)
    model_config = ModelConfig(path=model_path, backend=args.backend, device=args.device, dtype=args.dtype)
    try:
        policy = build_policy(model_config, RolloutConfig(max_new_tokens=max_new, temperature=args.temperature),
                              seed=args.seed)
    except (ValueError, OSError, BackendUnavailable) as exc:  # no such model, no CUDA, no vLLM
        return fail("eval", exc)
    if state is not None:
        policy.model.load_state_dict(state)
        policy.sync_weights()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail("eval", f"--out {args.out}: {exc.strerror or exc}")
    overflow = context_overflow(policy, problems, template, max_new)
    if overflow and overflow[0]:
        over, total, limit = overflow
        print(f"cuma eval: note: {over} of {total} prompts plus --max-new-tokens {max_new} exceed the model's {limit} "
              "positions; its answers there say little (evaluate small-context models such as the embedded tiny "
              "base on --bench arith)", file=sys.stderr)
    result = evaluate(policy, problems, template, samples=args.samples, temperature=args.temperature,
                      max_new_tokens=max_new, batch_size=args.batch_size, seed=args.seed, top_p=args.top_p,
                      last_number_fallback=not args.boxed_only)
    print(format_table(result, f"{args.model} on {args.bench}{f' ({args.split})' if args.split else ''}:"))
    write_results(result, args.out, model=args.model, bench=args.bench, max_new_tokens=max_new, split=args.split)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.eval ...` (the same as `cuma eval ...`)."""
    from agents.commands import run_standalone

    return run_standalone("eval", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
