"""Curated training data: ask a large LLM for new problems of a stated level 1-5 (CuMa, arXiv 2511.04902).

    from curricula.curation import CurationConfig, curate, make_generator
    gen = make_generator("openai:http://127.0.0.1:8000/v1#Qwen2.5-72B-Instruct")
    report = curate(CurationConfig(out="curated.jsonl", levels=(1, 2), calls=20), gen, data_dir="data/")
    print(report.summary())

Modules, one concern each:
- `prompts`: level rubric, topics, reference-example sampling (refreshed every call), the chat messages;
- `backends`: generators (`openai:` chat endpoint over stdlib HTTP, `replay:` saved completions as a test
  double) and the `--generator` spec; `hf_backend`: `hf:`, a local transformers model;
- `parsing`: problems out of imperfect completions (tags, JSON, markdown; truncation);
- `validation`: length, question, answer leak, proof/diagram, LaTeX balance;
- `dedup`: exact and n-gram near-duplicate index (against the batch, the pool, and the evaluation sets);
- `pipeline`: the resumable, append-only run; `data`: seed pool and evaluation files.

Nothing here imports torch unless the `hf:` backend is used.
"""

from .backends import (
                       Completion,
                       Generator,
                       GeneratorError,
                       GeneratorSpecError,
                       GeneratorUnreachable,
                       OpenAIChatGenerator,
                       ReplayGenerator,
                       SamplingParams,
                       make_generator,
)
from .data import DATA_DIR_ENV, DataFileMissing, SeedProblem, load_eval_texts, load_seed_pool, resolve_data_dir
from .dedup import EVAL_INDEX_DEFAULTS, TRAIN_INDEX_DEFAULTS, Match, NearDupIndex, build_eval_index, jaccard
from .hf_backend import TransformersGenerator
from .parsing import ParsedProblem, ParseResult, format_problems, parse_completion
from .pipeline import CurationConfig, CurationReport, CurationStateError, Curator, build_pool_index, curate
from .prompts import LEVEL_RUBRIC, TOPICS, ReferenceSampler, build_messages, topic_slug
from .validation import ValidationConfig, check_latex, validate_problem

__all__ = [
    "Completion", "CurationConfig", "CurationReport", "CurationStateError", "Curator", "DATA_DIR_ENV",
    "DataFileMissing", "EVAL_INDEX_DEFAULTS", "Generator", "GeneratorError", "GeneratorSpecError",
    "GeneratorUnreachable", "LEVEL_RUBRIC", "Match", "NearDupIndex", "OpenAIChatGenerator", "ParseResult",
    "ParsedProblem", "ReferenceSampler", "ReplayGenerator", "SamplingParams", "SeedProblem", "TOPICS",
    "TRAIN_INDEX_DEFAULTS", "TransformersGenerator", "ValidationConfig", "build_eval_index", "build_messages",
    "build_pool_index", "check_latex", "curate", "format_problems", "jaccard", "load_eval_texts", "load_seed_pool",
    "make_generator",
    "parse_completion", "resolve_data_dir", "topic_slug", "validate_problem",
]
