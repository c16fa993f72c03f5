"""Any RL algorithm plugs in: plain REINFORCE in PyTorch against `gym.make("CuMa-Arith-v0")`, no TorchRL.

The env only sees strings: the policy samples a group of completions for the prompt, the env returns the
label-free per-response rewards (masked majority vote), and REINFORCE with the group mean as baseline
updates the model. Masked groups carry no signal and are skipped.

    python examples/other_algorithm.py --steps 50
    python examples/other_algorithm.py --model smollm2-135m     # a real LLM: 2 episodes of 4 x 32 tokens

`--model` is what `model.path` accepts (`tiny`, `smollm2-135m`, a model dir, a hub id; agents.policy.model_source).
Prompts go through the model's chat template (the tiny base's renders the text as is); a model other than the
tiny base gets tiny defaults, since every episode samples and back-propagates on the CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import torch

import cuma_env  # noqa: F401  (registers the envs)
from agents.config import TINY_MODEL
from agents.policy import load_model, model_source
from agents.tiny.corpus import MAX_COMPLETION_TOKENS
from agents.tiny.model import load_tiny_base

# (episodes, group size, new tokens) for a real LLM on a CPU: sized to finish in a minute or two, not to learn
QUICK = {"steps": 2, "group_size": 4, "max_new_tokens": 32}
TINY = {"steps": 50, "group_size": 8, "max_new_tokens": MAX_COMPLETION_TOKENS}


def load_policy(name: str):
    """(model, tokenizer, is the tiny base): the tiny base through its checked loader, others through the agent's."""
    source = model_source(name)
    if (Path(source) / "cuma_base.json").is_file():
        return *load_tiny_base(source), True
    return *load_model(source, torch.device("cpu")), False


def render(tokenizer, text: str) -> str:
    """The observation as the model's chat template frames a user turn (the text as is where there is none)."""
    if not getattr(tokenizer, "chat_template", None):
        return text
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


def sample_group(model, tokenizer, prompt: str, n: int, temperature: float,
                 max_new_tokens: int = MAX_COMPLETION_TOKENS):
    """n completions of one prompt, with their token ids (for the log-likelihood) and texts."""
    enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        seqs = model.generate(**enc, do_sample=True, temperature=temperature, top_k=None, top_p=None,
                              num_return_sequences=n, max_new_tokens=max_new_tokens,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    prompt_len = enc["input_ids"].shape[1]
    texts = tokenizer.batch_decode(seqs[:, prompt_len:], skip_special_tokens=True)
    return seqs, prompt_len, texts


def sequence_log_probs(model, seqs: torch.Tensor, prompt_len: int, end_ids: tuple[int, ...]) -> torch.Tensor:
    """Sum of log p(token) over each completion, up to and including its first eos (padding excluded)."""
    logits = model(seqs).logits[:, prompt_len - 1:-1]
    targets = seqs[:, prompt_len:]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    is_end = torch.isin(targets, torch.tensor(end_ids))
    ends_before = torch.cumsum(is_end, dim=1) - is_end.long()
    return (logp * (ends_before == 0)).sum(dim=1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=TINY_MODEL,
                        help="tiny (default) | smollm2-135m | a model dir | a hub id, as model.path takes")
    parser.add_argument("--steps", type=int, default=None, help="episodes (default 50; 2 for a real LLM)")
    parser.add_argument("--group-size", type=int, default=None, help="completions per prompt (default 8; 4)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 48 (the tiny base's); 32")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--temperature", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model, tokenizer, tiny = load_policy(args.model)
    for key, value in (TINY if tiny else QUICK).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    env = gym.make("CuMa-Arith-v0", group_size=args.group_size, levels=args.levels)
    end_ids = tuple({tokenizer.eos_token_id, tokenizer.pad_token_id} - {None})
    obs, _ = env.reset(seed=args.seed)
    history = {"reward": [], "masked": [], "updates": 0}
    for _ in range(args.steps):
        model.eval()
        seqs, prompt_len, texts = sample_group(model, tokenizer, render(tokenizer, obs), args.group_size,
                                               args.temperature, args.max_new_tokens)
        _, reward, _, _, info = env.step(texts)
        history["reward"].append(reward)
        history["masked"].append(info["masked"])
        rewards = torch.tensor(info["rewards"])
        advantages = rewards - rewards.mean()
        if not info["masked"] and advantages.abs().sum() > 0:
            model.train()
            loss = -(advantages * sequence_log_probs(model, seqs, prompt_len, end_ids)).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            history["updates"] += 1
        obs, _ = env.reset()
    n = len(history["reward"])
    print(f"{n} episodes, {history['updates']} updates, mean reward {sum(history['reward']) / n:.3f}, "
          f"mask rate {sum(history['masked']) / n:.2f}")
    return history


if __name__ == "__main__":
    main()
