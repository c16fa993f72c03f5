"""Sub-commands of the `cuma` CLI: each module exposes `add_parser(subparsers)` and `run(args) -> int`."""
