"""Sub-commands of the `cuma` CLI: each module exposes `add_parser(subparsers)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def run_standalone(name: str, add_parser: Callable, run: Callable[[argparse.Namespace], int],
                   argv: Sequence[str] | None = None) -> int:
    """`python -m agents.commands.<name> ...`: parse `argv` (default sys.argv) as `cuma <name> ...` and run it."""
    parser = argparse.ArgumentParser(prog="cuma")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)]))
