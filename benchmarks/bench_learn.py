"""Where a real LLM's learner step goes: the loss's forward+backward with TorchRL's scorer against the chosen-token
scorer, with 1 and 2 threads, and bfloat16 autocast against float32 (generation and forward).

    python benchmarks/bench_learn.py --model smollm2-135m [--rows 64 --prompt 50 --response 48 --rounds 3]
                                     [--lora-rank 16]

The batch is the shape of one smollm2 step (8 prompts x 8 completions): `--rows` rows of `--prompt` prompt
tokens and `--response` response tokens (random ids: the cost does not depend on them), every row trained
(advantages +-1), TorchRL's `GRPOLoss` (on-policy, `sft` masking) over each scorer on the same model. The
contenders alternate within each round so that machine load hits them alike; the table gives medians and the
ratio to TorchRL's scorer at the same thread count, measured in this process. The scorers' equality of loss
and gradient is a test (tests/test_chosen_token_scorer.py), not measured here.
`--lora-rank R`: one more contender, the chosen-token scorer over a copy of the model with rank-R LoRA adapters on
every linear layer (`model.lora_rank`, agents/lora.py): the base's weight gradients are never computed.
Rows share their prompt in groups of `--group` (a GRPO group), and one contender forwards each group's prompt once
(`model.shared_prompt_forward`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def loss_batch_of(tokenizer, rows: int, prompt: int, response: int, seed: int = 0, group: int = 8):
    """A dense loss batch (the learner's layout) of random tokens: prompt then response, every row trained."""
    import torch
    from tensordict import TensorDict

    g = torch.Generator().manual_seed(seed)
    vocab = len(tokenizer)
    # each group of `group` rows shares its prompt, as a GRPO group does
    prompt_ids = torch.randint(100, vocab, (-(-rows // group), prompt), generator=g).repeat_interleave(group, 0)[:rows]
    response_ids = torch.randint(100, vocab, (rows, response), generator=g)
    full = torch.cat([prompt_ids, response_ids], 1)
    attention = torch.ones_like(full, dtype=torch.bool)
    assistant = torch.cat([torch.zeros_like(prompt_ids, dtype=torch.bool),
                           torch.ones_like(response_ids, dtype=torch.bool)], 1)
    advantage = (torch.arange(rows) % 2 * 2 - 1).float().view(rows, 1, 1)  # (G, 1, 1), as GroupVote writes it
    return TensorDict({("tokens", "full"): full, ("tokens", "prompt"): prompt_ids,
                       ("masks", "all_attention_mask"): attention, ("masks", "all_assistant_mask"): assistant,
                       "advantage": advantage, ("log_probs", "full"): torch.zeros(full.shape)}, batch_size=[rows])


def time_loss(loss_module, model, batch) -> float:
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    loss_module(batch.copy()).loss_objective.backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a packaged model name or a model directory")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--prompt", type=int, default=50)
    parser.add_argument("--response", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3, help="alternation rounds (the first is a warm-up)")
    parser.add_argument("--threads", default="1,2", help="thread counts to measure (comma-separated)")
    parser.add_argument("--skip-bf16", action="store_true", help="do not measure bfloat16 autocast")
    parser.add_argument("--group", type=int, default=8, help="rows sharing a prompt (a GRPO group)")
    parser.add_argument("--lora-rank", type=int, default=0, help="also time LoRA adapters of this rank (0: not)")
    args = parser.parse_args(argv)
    import torch
    from torchrl.modules.llm import TransformersWrapper

    from agents.chosen_token_scorer import ChosenTokenScorer
    from agents.learner import OnPolicyGRPOLoss
    from agents.policy import load_model

    warnings.filterwarnings("ignore")
    model, tokenizer = load_model(args.model, torch.device("cpu"))
    batch = loss_batch_of(tokenizer, args.rows, args.prompt, args.response, group=args.group)
    losses = {cls.__name__: OnPolicyGRPOLoss(cls(model, tokenizer=tokenizer, input_mode="tokens", generate=False,
                                                 return_log_probs=True, pad_output=True), masking_strategy="sft")
              for cls in (TransformersWrapper, ChosenTokenScorer)}
    shared = ChosenTokenScorer(model, tokenizer=tokenizer, input_mode="tokens", generate=False,
                               return_log_probs=True, pad_output=True)
    shared.share_prompts = True  # model.shared_prompt_forward: a group's prompt forwarded once
    losses["ChosenTokenScorer+shared prompts"] = OnPolicyGRPOLoss(shared, masking_strategy="sft")
    models = dict.fromkeys(losses, model)  # whose gradients each contender's step clears
    if args.lora_rank > 0:
        import copy

        from agents.lora import add_lora

        adapted = add_lora(copy.deepcopy(model), rank=args.lora_rank, alpha=2.0 * args.lora_rank)
        models[f"ChosenTokenScorer+LoRA{args.lora_rank}"] = adapted
        losses[f"ChosenTokenScorer+LoRA{args.lora_rank}"] = OnPolicyGRPOLoss(
            ChosenTokenScorer(adapted, tokenizer=tokenizer, input_mode="tokens", generate=False,
                              return_log_probs=True, pad_output=True), masking_strategy="sft")
    threads = [int(t) for t in args.threads.split(",")]
    timed: dict[tuple[str, int], list[float]] = {}
    print(f"{args.model}: loss forward+backward, {args.rows} rows x ({args.prompt} prompt + {args.response} response) "
          f"tokens, {args.rounds} rounds (first = warm-up)", flush=True)
    for round_ in range(args.rounds):
        for n in threads:
            torch.set_num_threads(n)
            for name, loss in losses.items():
                seconds = time_loss(loss, models[name], batch)
                if round_ > 0 or args.rounds == 1:
                    timed.setdefault((name, n), []).append(seconds)
                print(f"  round {round_ + 1}: {name}, {n} thread(s): {seconds:.1f} s", flush=True)
    print("\n| scorer | threads | median s | TorchRL's scorer (1 thread) / this |")
    print("|---|---|---|---|")
    reference = statistics.median(timed[("TransformersWrapper", threads[0])])
    for (name, n), values in timed.items():
        med = statistics.median(values)
        print(f"| {name} | {n} | {med:.1f} | {reference / med:.2f}x |")
    if not args.skip_bf16:
        bf16_vs_fp32(model, tokenizer, threads[-1])
    return 0


def bf16_vs_fp32(model, tokenizer, threads: int) -> None:
    """A short forward and a short generation under bfloat16 autocast against float32 (same inputs)."""
    import torch

    from agents.generation import autocast, generate_texts

    torch.set_num_threads(threads)
    ids = torch.randint(100, len(tokenizer), (8, 64))
    prompts = ["What is 23 + 45? Answer in \\boxed{}."] * 2
    print(f"\nbfloat16 autocast vs float32 ({threads} thread(s)): forward 8 x 64 tokens, generate 2 x 4 x 16 tokens")
    for dtype in (torch.float32, torch.bfloat16):
        start = time.perf_counter()
        with torch.no_grad(), autocast(torch.device("cpu"), dtype):
            model(ids)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        generate_texts(model, tokenizer, prompts, samples=4, temperature=0.6, max_new_tokens=16, dtype=dtype, seed=0)
        print(f"  {str(dtype).removeprefix('torch.')}: forward {forward:.2f} s, generate "
              f"{time.perf_counter() - start:.2f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
