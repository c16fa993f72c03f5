"""Sub-commands of the `cuma` CLI: each module exposes `add_parser(subparsers)` and `run(args) -> int`.

A bad input to any command is one line on stderr, `cuma <command>: error: <what and how to fix>`, and exit
status 2: argparse's own errors (through `CommandParser`) as well as the commands' checks (through `fail`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


class CommandParser(argparse.ArgumentParser):
    """argparse with one-line errors; positionals (`key=value` overrides) may sit before, between or after
    the options (`parse_intermixed_args`, where the parser has no sub-commands)."""

    _parsing = False

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        if self._parsing or any(a.nargs == argparse.PARSER for a in self._get_positional_actions()):
            return super().parse_known_args(args, namespace)
        self._parsing = True  # parse_known_intermixed_args calls parse_known_args itself
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def add_commands(parser: argparse.ArgumentParser, modules: Sequence) -> None:
    """One sub-command per module; each parsed namespace carries its `handler` and `command_parser`."""
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for module in modules:
        before = set(sub.choices)
        module.add_parser(sub)
        for added in set(sub.choices) - before:
            sub.choices[added].set_defaults(handler=module.run, command_parser=sub.choices[added])


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, with arguments the command does not know reported by the command's parser."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def fail(command: str, message: object) -> int:
    """Print `cuma <command>: error: <message>` as one line on stderr; return 2 (the status of a bad input)."""
    print(f"cuma {command}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def check_out_file(path: Path) -> None:
    """Before any work: create `path`'s folder and check that it takes a new file (`OSError` if not;
    `IsADirectoryError` when `path` is a folder). Writes nothing."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path.parent):
        pass


def min_votes_option(value: float, n: int, n_option: str) -> int | float:
    """A `--min-votes` value as a count (an integer, 1..n, n the group's size given by `n_option`) or a share of
    the group (in (0, 1)); `ValueError` naming the fix otherwise (a count above n would mask every group).
    Checked by `cuma_env.voting.resolve_min_votes`, as the env and the config check theirs."""
    from cuma_env.voting import resolve_min_votes

    parsed = int(value) if value >= 1 and float(value).is_integer() else value
    resolve_min_votes(parsed, n, name="--min-votes", size_name=n_option, within_group=True)
    return parsed


def run_standalone(name: str, add_parser: Callable, run: Callable[[argparse.Namespace], int],
                   argv: Sequence[str] | None = None) -> int:
    """`python -m agents.commands.<name> ...`: parse `argv` (default sys.argv) as `cuma <name> ...` and run it."""
    import types

    parser = CommandParser(prog="cuma")
    add_commands(parser, [types.SimpleNamespace(add_parser=add_parser, run=run)])
    return run(parse(parser, [name, *(sys.argv[1:] if argv is None else argv)]))
