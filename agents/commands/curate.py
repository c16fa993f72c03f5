"""`cuma curate`: generate curated training problems of stated levels with a large LLM (resumable).

Each call shows the generator k reference problems of the requested level and topic from the seed pool
(different ones every call) and asks for --per-call new problems. Problems are parsed, validated and
de-duplicated against the batch, the seed pool, everything already in --out, and the evaluation sets
(MATH-500, GSM8K test, AIME24, AMC23, plus any --exclude file), then appended to --out (JSON Lines in the
pools' layout). Interrupt it at any time; re-running the same command continues with the next call, never
duplicates and never loses a written record.

Generators (--generator):
  openai:URL[#MODEL]        an OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp, TGI, ...), e.g.
                            openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-72B-Instruct; without #MODEL the
                            first model of URL/models is used; API key (if any) from $CUMA_GENERATOR_API_KEY
  hf:PATH_OR_HUB_ID[#opts]  a local transformers causal LM; opts: device=cuda|cpu|auto, dtype=bfloat16|...,
                            trust_remote_code=1, e.g. hf:Qwen/Qwen2.5-7B-Instruct#device=cuda,dtype=bfloat16;
                            the names model.path takes work too (hf:smollm2-135m, hf:tiny)
  replay:DIR                saved completions (*.txt) returned in turn: a test double / offline dry run

Example:
  vllm serve Qwen/Qwen2.5-72B-Instruct --port 8000 --tensor-parallel-size 4 &
  cuma curate --generator openai:http://127.0.0.1:8000/v1 --levels 1,2 --calls 200 --out curated.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _levels(text: str) -> tuple[int, ...]:
    from cuma_env.problems import LEVELS

    wrong = f"levels must be integers {LEVELS[0]}-{LEVELS[-1]} separated by commas, got {text!r}"
    try:
        levels = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(wrong) from None
    if not levels or any(lv not in LEVELS for lv in levels):
        raise argparse.ArgumentTypeError(wrong)
    return tuple(dict.fromkeys(levels))


def _topics(text: str) -> tuple[str, ...]:
    from curricula.curation.prompts import TOPICS, topic_slug

    if text.strip().lower() == "all":
        return tuple(TOPICS)
    try:
        return tuple(dict.fromkeys(topic_slug(t) for t in text.split(",") if t.strip()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_hf_spec(spec: str) -> str:
    """`hf:smollm2-135m` / `hf:tiny`: a name `model.path` takes becomes its cached directory (installed on first
    use; agents.policy.model_source), which the curation layer cannot import. Other specs pass unchanged."""
    from agents.config import TINY_MODEL
    from agents.packaged_models import is_packaged_model
    from agents.policy import model_source

    kind, sep, rest = spec.strip().partition(":")
    name, hash_sign, options = rest.partition("#")
    if kind not in ("hf", "transformers") or not (name == TINY_MODEL or is_packaged_model(name)):
        return spec
    return f"{kind}{sep}{model_source(name)}{hash_sign}{options}"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("curate", help="generate curated problems of stated levels with an LLM",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", required=True, metavar="SPEC",
                        help="openai:URL[#MODEL] | hf:PATH_OR_HUB_ID[#device=..,dtype=..] | replay:DIR (see above)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="output JSONL (appended, resumable)")
    parser.add_argument("--levels", type=_levels, default=None, metavar="L,L",
                        help="levels to request, e.g. 1,2 (default: every level)")
    parser.add_argument("--topics", type=_topics, default=None, metavar="T,T",
                        help="topics, e.g. algebra,geometry,counting_and_probability (default all: algebra, "
                             "counting_and_probability, geometry, intermediate_algebra, number_theory, "
                             "prealgebra, precalculus)")
    parser.add_argument("--per-call", type=int, default=25, help="problems asked per call (default 25)")
    parser.add_argument("--calls", type=int, default=None,
                        help="total calls, cycling over (level, topic) pairs (default one sweep: levels x topics)")
    parser.add_argument("--seed", type=int, default=0, help="seed of reference draws and sampling (default 0)")
    parser.add_argument("--k-examples", type=int, default=4, help="reference problems shown per call (default 4)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="benchmark data folder (default $CUMA_DATA_DIR): evaluation sets and default pool")
    parser.add_argument("--seed-pool", type=Path, default=None, metavar="FILE",
                        help="JSONL of reference problems with `problem` and `level` (default: the MATH 12k "
                             "training pool math/prm800k_train_12k.jsonl in the data folder)")
    parser.add_argument("--exclude", type=Path, action="append", default=[], metavar="FILE",
                        help="extra JSONL whose problems must not be copied (repeatable)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per HTTP request (default 300)")
    parser.add_argument("--retries", type=int, default=3, help="retries per HTTP request (default 3)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (default 0.95)")
    parser.add_argument("--max-tokens", type=int, default=6144, help="max new tokens per call (default 6144)")
    parser.add_argument("--dup-threshold", type=float, default=0.6,
                        help="n-gram Jaccard at which a problem duplicates the pool or earlier output (default 0.6)")
    parser.add_argument("--eval-threshold", type=float, default=0.5,
                        help="n-gram Jaccard at which a problem copies an evaluation problem (default 0.5)")
    parser.add_argument("--save-rejects", action="store_true",
                        help="also write rejected problems, with reasons, to FILE.rejects.jsonl")
    parser.add_argument("--save-raw", type=Path, default=None, metavar="DIR", help="keep each raw completion here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from agents.commands import fail
    from agents.packaged_models import PackagedModelUnavailable
    from cuma_env.problems import LEVELS
    from curricula.curation.backends import (
        GeneratorError,
        GeneratorSpecError,
        GeneratorUnreachable,
        SamplingParams,
        make_generator,
    )
    from curricula.curation.data import DataFileMissing, load_seed_pool
    from curricula.curation.dedup import build_eval_index
    from curricula.curation.pipeline import CurationConfig, CurationStateError, Curator
    from curricula.curation.prompts import TOPICS

    if args.out.is_dir():
        return fail("curate", f"--out {args.out} is a directory; give a JSONL file, e.g. {args.out / 'curated.jsonl'}")
    try:
        config = CurationConfig(out=args.out, levels=args.levels or LEVELS, topics=args.topics or tuple(TOPICS),
                                per_call=args.per_call, calls=args.calls, seed=args.seed, k_examples=args.k_examples,
                                dup_threshold=args.dup_threshold, save_rejects=args.save_rejects,
                                save_raw=args.save_raw)
        params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens)
        generator = make_generator(resolve_hf_spec(args.generator), params=params, timeout=args.timeout,
                                   retries=args.retries)
        eval_index = build_eval_index(args.data_dir, extra_files=args.exclude, threshold=args.eval_threshold)
        pool = load_seed_pool(args.seed_pool, data_dir=args.data_dir)
        curator = Curator(config, generator, pool, eval_index, progress=not args.no_progress)
    except (DataFileMissing, GeneratorSpecError, PackagedModelUnavailable, ValueError) as exc:
        return fail("curate", exc)
    for option, folder in ((f"--out {args.out}", args.out.parent), (f"--save-raw {args.save_raw}", args.save_raw)):
        try:  # the folders the run writes into, before the first (costly) call
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail("curate", f"{option}: cannot create the folder {folder} ({exc.strerror or exc})")
    try:
        report = curator.run()
    except GeneratorUnreachable as exc:
        print(f"cuma curate: {exc}\n(progress is saved; re-run the same command to continue)", file=sys.stderr)
        return 3
    except GeneratorError as exc:
        print(f"cuma curate: generator failed: {exc}\n(progress is saved; re-run the same command to continue)",
              file=sys.stderr)
        return 1
    except CurationStateError as exc:
        return fail("curate", exc)
    except KeyboardInterrupt:
        print("cuma curate: interrupted; every finished call is saved, re-run the same command to continue",
              file=sys.stderr)
        return 130
    print(report.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agents.commands.curate ...` (the same as `cuma curate ...`)."""
    from agents.commands import run_standalone

    return run_standalone("curate", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
