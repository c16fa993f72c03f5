"""`cuma demo`: label-free episodes of `CuMa-Arith-v0` played by the embedded weak base.

Shows what the environment does before any training: per level, each group's answers, its majority vote,
whether it is masked, the rewards, and (diagnostic only) whether the majority was right.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    from cuma_env.voting import DEFAULT_MIN_VOTES

    parser = subparsers.add_parser("demo", help="play label-free episodes with the embedded tiny base",
                                   description=__doc__)
    parser.add_argument("--episodes", type=int, default=3, help="episodes per level (default 3)")
    parser.add_argument("--group-size", type=int, default=8, help="answers sampled per problem (default 8)")
    parser.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (default 0.6)")
    parser.add_argument("--min-votes", type=float, default=DEFAULT_MIN_VOTES,
                        help="mask threshold: a count (2) or a share of the group (0.75) (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the episodes as JSONL here")
    return parser


def _check(args: argparse.Namespace) -> int | float:
    """`ValueError` naming the first bad option; else --min-votes as a count (an integer, 1..--group-size) or a
    share of the group (in (0, 1))."""
    if args.episodes < 1 or args.group_size < 2:
        raise ValueError(f"--episodes must be >= 1 and --group-size >= 2, got {args.episodes} and {args.group_size}")
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be > 0, got {args.temperature}")
    from agents.commands import min_votes_option

    return min_votes_option(args.min_votes, args.group_size, "--group-size")


def run(args: argparse.Namespace) -> int:
    from agents.commands import check_out_file, fail

    try:
        min_votes = _check(args)
    except ValueError as exc:
        return fail("demo", exc)
    try:  # before any episode: a bad --out must not waste the run
        if args.out is not None:
            if args.out.is_dir():
                raise IsADirectoryError(f"is a directory; give a JSONL file, e.g. {args.out / 'demo.jsonl'}")
            check_out_file(args.out)
    except OSError as exc:
        return fail("demo", f"--out {args.out}: {exc.strerror or exc}")
    import gymnasium as gym
    import torch

    import cuma_env  # noqa: F401  (registers the envs)
    from agents.tiny.cache import ensure_tiny_base
    from agents.tiny.model import load_tiny_base
    from agents.tiny.profile import generate_completions
    from cuma_env.problems import LEVELS

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    try:
        path = ensure_tiny_base(progress=True)
    except OSError as exc:  # the cache folder cannot be created or written
        return fail("demo", exc)
    model, tokenizer = load_tiny_base(path)
    env = gym.make("CuMa-Arith-v0", group_size=args.group_size, min_votes=min_votes)
    records = []
    for level in LEVELS:
        print(f"\n== level {level} ==")
        for episode in range(args.episodes):
            prompt, _ = env.reset(seed=args.seed * 1000 + level * 100 + episode, options={"level": level})
            group = generate_completions(model, tokenizer, [prompt], samples=args.group_size,
                                         temperature=args.temperature)[0]
            _, reward, _, _, info = env.step(group)
            mark = "masked" if info["masked"] else f"majority={info['majority']!r} x{info['majority_count']}"
            truth = "right" if info.get("majority_correct") else "wrong"
            print(f"{prompt!r}\n  answers={info['answers']}\n  {mark} ({truth}, diagnostic) "
                  f"mean reward={reward:.2f}")
            records.append({"prompt": prompt, "completions": list(group), **info})
    if args.out is not None:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in records))
        print(f"\nwrote {len(records)} episodes to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.demo ...` (the same as `cuma demo ...`)."""
    from agents.commands import run_standalone

    return run_standalone("demo", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
