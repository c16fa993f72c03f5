"""`cuma train`: label-free GRPO on TorchRL from a preset or a YAML config, with `key=value` overrides.

  cuma train                                   # the default preset (tiny-cuma-gated), a few minutes on a CPU
  cuma train --preset tiny-ttrl train.steps=60 --out runs/ttrl
  cuma train --config my.yaml lr=1e-5          # a YAML file in the layout of agents/presets/*.yaml
  cuma train --resume runs/ttrl                # continue from the last checkpoint (also after kill -9)
  cuma train rollout.workers=2                 # sampling on 2 Ray workers (pip install "cuma-gym[ray]")
  cuma train --list-presets

The run directory (--out, default runs/<preset>-<date>-<time>) receives config.yaml, metrics.csv, eval.csv,
report.png, summary.json, checkpoints/ and the final model/ (evaluate it with `cuma eval --model DIR/model`).
Ctrl-C saves a checkpoint after the current step. Overrides take dotted keys (train.lr=1e-5) or unique leaf
names (lr=1e-5); a bad key or value fails at once with one line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="label-free GRPO training (TorchRL) from a preset or config",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", metavar="NAME",
                        help="a shipped preset (default tiny-cuma-gated; see --list-presets)")
    source.add_argument("--config", type=Path, metavar="FILE", help="a YAML config file")
    source.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    parser.add_argument("--out", type=Path, metavar="DIR", help="run directory (default runs/<preset>-<time>)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="with rollout.workers > 1: join this Ray cluster (auto, host:port) instead of starting "
                             "a local Ray (the same as ray.address=ADDR)")
    parser.add_argument("--list-presets", action="store_true", help="print the shipped presets and exit")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-5")
    return parser


def run(args: argparse.Namespace) -> int:
    from agents.commands import fail
    from agents.config import ConfigError, load_config, preset_names, preset_path

    if args.list_presets:
        for name in preset_names():
            first = next((ln[2:] for ln in preset_path(name).read_text().splitlines() if ln.startswith("# ")), "")
            print(f"{name:26s} {first}")
        return 0
    if args.ray_address is not None:
        args.overrides = [*args.overrides, f"ray.address={args.ray_address}"]
    try:
        if args.resume is not None:
            if args.out is not None and args.out.resolve() != args.resume.resolve():
                raise ConfigError("--out and --resume name different directories; --resume continues in place")
            from agents.trainer import Trainer

            trainer = Trainer.resume(args.resume, args.overrides)
        else:
            notes: list[str] = []  # e.g. the preset's curriculum.options dropped for another schedule
            config = load_config(preset=args.preset, path=args.config, overrides=args.overrides, notes=notes)
            for note in notes:
                print(f"cuma train: note: {note}", flush=True)
            out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            from agents.trainer import Trainer  # torch & co. only once the config is known to be valid

            trainer = Trainer.new(config, out)
    except ConfigError as exc:
        return fail("train", exc)
    except OSError as exc:  # --out cannot be created or written
        return fail("train", f"cannot write the run directory: {exc.filename}: {exc.strerror or exc}")
    from agents.policy import BackendUnavailable

    try:  # what the config cannot know: the model, the data files, the device and backend on this machine
        trainer.build()
    except (ValueError, OSError, BackendUnavailable) as exc:
        trainer.discard()  # a failed start leaves no run directory behind
        return fail("train", exc)
    print(f"run directory: {trainer.run_dir}", flush=True)
    from agents.learner import ContextOverflow
    from agents.trainer import RunStopped

    try:
        summary = trainer.run()
    except ContextOverflow as exc:  # a prompt longer than the ones checked at the start was drawn
        return fail("train", f"{exc}; stopped at step {trainer.step} ({trainer.run_dir})")
    except RunStopped as exc:  # e.g. a Ray rollout worker died: the last finished step is saved
        return fail("train", exc)
    return 130 if summary.get("interrupted") else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.train ...` (the same as `cuma train ...`)."""
    from agents.commands import run_standalone

    return run_standalone("train", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
