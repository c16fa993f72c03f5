"""Peak memory and time of one GRPO learner pass at the paper's sizes, for each `train.micro_batch`.

The `qwen2.5-0.5b-cuma` preset trains rows of up to ~3,400 tokens (prompt + 3,072 new) of a 0.5B model whose
vocabulary has 151,936 entries: one row's logits alone are ~1 GB in bf16. This script builds a model of that
exact shape with random weights (no download: Qwen2.5-0.5B's config numbers, a character tokenizer, the
vocabulary kept at 151,936), a synthetic loss batch of `--rows` rows x `--width` tokens, and runs the real
`Learner` forward/backward (`agents.learner.Learner._backward`) once per micro-batch size, printing the peak
GPU memory and seconds of each against the one-pass baseline in the same process. Speed and memory only:
the equality of the gradients is tests/test_micro_batch.py's.

    python benchmarks/bench_learner_memory.py                       # CUDA: the preset's shape
    python benchmarks/bench_learner_memory.py --micro-batch 0 8 4   # 0 = one pass over all rows
    python benchmarks/bench_learner_memory.py --shape tiny --device cpu --rows 8 --width 64   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {  # Qwen2.5-0.5B's config.json numbers; "tiny" for a CPU smoke run
    "qwen2.5-0.5b": dict(vocab_size=151_936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32_768,
                         tie_word_embeddings=True, rope_theta=1_000_000.0),
    "tiny": dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True),
}


def build_model_dir(shape: str, folder: Path) -> Path:
    """A random-weights Qwen2 of `shape` saved with a character tokenizer (ids beyond the tokenizer's are fine:
    the batch is synthetic token ids; only the logits' width matters for memory)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from agents.tiny.config import TinyBaseConfig
    from agents.tiny.tokenizer import build_char_tokenizer, save_char_tokenizer

    tokenizer = build_char_tokenizer(TinyBaseConfig().merges, model_max_length=SHAPES[shape]["max_position_embeddings"])
    config = Qwen2Config(**SHAPES[shape], eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    save_char_tokenizer(tokenizer, folder)
    return folder


def synthetic_batch(rows: int, width: int, prompt: int, vocab: int, device: torch.device):
    """The dense loss batch `agents.learner.loss_batch` builds: prompt + response tokens, masks, advantages."""
    from tensordict import TensorDict

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, vocab, (rows, width), generator=generator)
    response = torch.zeros(rows, width, dtype=torch.bool)
    response[:, prompt:] = True
    advantage = torch.tensor([1.0, -1.0]).repeat(rows // 2 + 1)[:rows].view(rows, 1, 1)
    return TensorDict({("tokens", "full"): tokens, ("tokens", "prompt"): tokens[:, :prompt],
                       ("masks", "all_attention_mask"): torch.ones(rows, width, dtype=torch.bool),
                       ("masks", "all_assistant_mask"): response, "advantage": advantage},
                      batch_size=[rows]).to(device)


def measure(policy, batch, micro_batch: int, repeats: int) -> dict:
    from agents.config import TrainConfig
    from agents.learner import Learner

    learner = Learner(policy, TrainConfig(micro_batch=micro_batch or None), group_size=2)
    cuda = policy.device.type == "cuda"
    seconds = []
    try:
        for _ in range(repeats):
            policy.model.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            learner._backward(batch.copy())
            if cuda:
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
    except torch.OutOfMemoryError:
        return {"micro_batch": micro_batch, "oom": True}
    finally:
        policy.model.zero_grad(set_to_none=True)
        del learner
        if cuda:
            torch.cuda.empty_cache()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {"micro_batch": micro_batch, "oom": False, "peak_gib": peak, "seconds": min(seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=tuple(SHAPES), default="qwen2.5-0.5b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rows", type=int, default=32, help="kept rows in one step (the preset: up to 256)")
    parser.add_argument("--width", type=int, default=3400, help="tokens per row (prompt + response)")
    parser.add_argument("--prompt", type=int, default=300, help="prompt tokens per row")
    parser.add_argument("--micro-batch", type=int, nargs="+", default=[0, 16, 8, 4, 2],
                        help="rows per pass; 0 = one pass over all rows (the baseline)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 0 < args.prompt < args.width or args.rows < 1:
        parser.error("need 0 < --prompt < --width and --rows >= 1")
    torch.set_num_threads(1) if args.device == "cpu" else None

    from agents.config import ModelConfig, RolloutConfig
    from agents.policy import build_policy

    with tempfile.TemporaryDirectory() as folder:
        model_dir = build_model_dir(args.shape, Path(folder))
        policy = build_policy(ModelConfig(path=str(model_dir), device=args.device), RolloutConfig())
    batch = synthetic_batch(args.rows, args.width, args.prompt, SHAPES[args.shape]["vocab_size"], policy.device)
    print(f"{args.shape}: {sum(p.numel() for p in policy.model.parameters()) / 1e6:.0f}M parameters on "
          f"{policy.device} ({policy.dtype}); {args.rows} rows x {args.width} tokens ({args.prompt} prompt)")
    results = [measure(policy, batch, m, args.repeats) for m in args.micro_batch]
    base = next((r for r in results if r["micro_batch"] == 0 and not r["oom"]), None)
    print("| micro_batch | peak GPU memory GiB | seconds | vs one pass (memory, time) |")
    print("|---|---|---|---|")
    for r in results:
        name = "one pass" if r["micro_batch"] == 0 else str(r["micro_batch"])
        if r["oom"]:
            print(f"| {name} | out of memory | | |")
            continue
        peak = "n/a (cpu)" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        ratio = ""
        if base is not None and r is not base:
            memory = f"{r['peak_gib'] / base['peak_gib']:.2f}x" if r["peak_gib"] is not None else "n/a"
            ratio = f"{memory}, {r['seconds'] / base['seconds']:.2f}x"
        print(f"| {name} | {peak} | {r['seconds']:.2f} | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps({"shape": args.shape, "device": str(policy.device), "rows": args.rows,
                                         "width": args.width, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
