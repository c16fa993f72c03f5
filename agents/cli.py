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
    from agents.commands import CommandParser, add_commands

    parser = CommandParser(prog="cuma", description="CuMa gym: label-free RL for LLM math reasoning.")
    add_commands(parser, [importlib.import_module(f"agents.commands.{name}") for name in COMMANDS])
    return parser


def main(argv: list[str] | None = None) -> int:
    from agents.commands import parse

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 threads make small-model generation ~100x slower here
    args = parse(build_parser(), argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
