"""The `cuma` command: one subcommand per module in `agents.commands`.

Each command module exposes `add_parser(subparsers)` and `run(args) -> int`, so a new command is one
module plus one name in `COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

AGENT_STACK = ("torch", "torchrl", "tensordict", "transformers", "tokenizers", "safetensors", "huggingface_hub",
               "matplotlib", "filelock", "yaml")  # the [agent] extra and what it brings
COMMANDS = ("demo", "train", "eval", "reproduce", "study", "base", "calibrate", "curate")


def build_parser() -> argparse.ArgumentParser:
    from agents.commands import CommandParser, add_commands

    parser = CommandParser(prog="cuma", description="CuMa gym: label-free RL for LLM math reasoning.")
    add_commands(parser, [importlib.import_module(f"agents.commands.{name}") for name in COMMANDS])
    return parser


def main(argv: list[str] | None = None) -> int:
    from agents.name_clash import clash_message

    clash = clash_message()  # another distribution's `agents` beside ours: one line now, not a failure deep inside
    if clash is not None:
        print(clash, file=sys.stderr)
        return 1
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # more threads contend on 2 cores (docs/performance.md)
    try:
        from agents.commands import parse

        args = parse(build_parser(), argv)
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:  # a core-only install: the TorchRL agent stack is the [agent] extra
        if (err.name or "").partition(".")[0] not in AGENT_STACK:
            raise
        print(f'cuma: {err.name} is not installed; the agent stack is an extra: pip install "cuma-gym[agent]"',
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
