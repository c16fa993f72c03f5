"""The `cuma` command: one subcommand per module in `agents.commands`.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`, so a new command is one
module plus one name in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ("demo", "train", "eval", "reproduce", "base", "calibrate", "curate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cuma", description="CuMa gym: label-free RL for LLM math reasoning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"agents.commands.{name}")
        before = set(sub.choices)
        module.add_parser(sub)
        for added in set(sub.choices) - before:
            sub.choices[added].set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 threads make small-model generation ~100x slower here
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
