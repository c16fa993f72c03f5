"""Run CuMa's verl reward managers inside real verl on a CPU; `benchmarks/check_verl.sh` builds the venv.

The batch is built the way verl's PPO trainer builds it (a uid per prompt, `repeat(n, interleave=True)`, the
rollout's prompts/responses/attention_mask unioned in, rows reordered as `balance_batch` may), with scripted
completions standing in for the policy and a byte-level BPE tokenizer trained here (no download). Checks:
1. the batch manager, found through verl's registry, votes per uid: rewards equal `cuma_env.score_group` on
   each uid's decoded texts, on the last valid token, and verl's GRPO advantage is zero for a masked group;
2. the reward-loop manager (verl >= 0.7.1's trainer path), loaded by verl's own `RewardLoopWorker` from a
   config, gives the same rewards batch-wise (`compute_score_batch`) and sample by sample (`compute_score`
   called concurrently in random order, as the agent loop streams finished rollouts).
Prints one line per check and a JSON summary; exits non-zero on any failure.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import tempfile
import time
import uuid

import numpy as np
import torch

N = 4
SEED = 0
PROMPT_LEN, RESPONSE_LEN = 64, 48
# (question, reference, the n completions the scripted policy returns)
DATASET = [
    ("What is 2+2?", "4", ["so \\boxed{4}", "I get \\boxed{4}", "\\boxed{5}", "it is \\boxed{4}"]),
    ("What is 3*3?", "9", ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "no idea"]),       # no 2 agree: masked
    ("What is 10-7?", "3", ["hmm", "", "\\boxed{3}", "\\boxed{3}"]),                    # unanswered never vote
    ("Half of 1?", "1/2", ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{2}"]),  # equivalents
]
MIN_VOTES = 2
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, bool(ok), detail))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)


def build_tokenizer(directory: str):
    """A byte-level BPE trained on the dataset's texts, saved so `AutoTokenizer` (verl's `hf_tokenizer`) loads it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    texts = [q for q, _, _ in DATASET] + [c for _, _, cs in DATASET for c in cs]
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<eos>"],
                                                        show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")
    tokenizer.save_pretrained(directory)
    return tokenizer


def _pad(ids, length, pad, left):
    ids = list(ids)[:length]
    fill = [pad] * (length - len(ids))
    return (fill + ids, [0] * len(fill) + [1] * len(ids)) if left else (ids + fill, [1] * len(ids) + [0] * len(fill))


def _objects(values):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def build_batch(tokenizer):
    """The training batch at verl's reward step, built with verl's own DataProto operations."""
    from verl import DataProto

    rng = random.Random(SEED)
    pad = tokenizer.pad_token_id
    prompt_rows = [_pad(tokenizer.encode(q), PROMPT_LEN, pad, left=True) for q, _, _ in DATASET]
    ids = torch.tensor([r[0] for r in prompt_rows])
    mask = torch.tensor([r[1] for r in prompt_rows])
    batch = DataProto.from_single_dict({
        "input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
        "data_source": _objects(["toy_math"] * len(DATASET)),
        "reward_model": _objects([{"style": "rule", "ground_truth": t} for _, t, _ in DATASET]),
        "extra_info": _objects([{"split": "train", "index": k} for k in range(len(DATASET))]),
    })
    batch.non_tensor_batch["uid"] = _objects([str(uuid.UUID(int=rng.getrandbits(128))) for _ in DATASET])
    gen_batch = batch.pop(batch_keys=["input_ids", "attention_mask", "position_ids"])
    gen_batch = gen_batch.repeat(repeat_times=N, interleave=True)
    # the rollout: row k*N + j holds completion j of prompt k (interleaved repeat)
    responses, resp_mask = [], []
    for row in range(len(gen_batch)):
        k, j = divmod(row, N)
        r_ids, r_mask = _pad(tokenizer.encode(DATASET[k][2][j]) + [tokenizer.eos_token_id], RESPONSE_LEN, pad, False)
        responses.append(r_ids)
        resp_mask.append(r_mask)
    responses, resp_mask = torch.tensor(responses), torch.tensor(resp_mask)
    prompts, p_mask = gen_batch.batch["input_ids"], gen_batch.batch["attention_mask"]
    attention = torch.cat([p_mask, resp_mask], dim=-1)
    gen_out = DataProto.from_dict(tensors={
        "prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], dim=-1),
        "attention_mask": attention, "position_ids": (attention.cumsum(-1) - 1).clamp(min=0)})
    batch = batch.repeat(repeat_times=N, interleave=True).union(gen_out)
    perm = list(range(len(batch)))
    rng.shuffle(perm)  # what balance_batch may do: rows of a uid no longer adjacent
    batch.reorder(torch.tensor(perm))
    return batch


def expected_by_score_group(batch, tokenizer):
    """Per-row (reward, masked, majority) straight from cuma_env.score_group on each uid's decoded texts."""
    from cuma_env import EpisodeConfig, Problem, score_group

    lengths = batch.batch["attention_mask"][:, PROMPT_LEN:].sum(-1).tolist()
    texts = [tokenizer.decode(batch.batch["responses"][i][:lengths[i]], skip_special_tokens=True)
             for i in range(len(batch))]
    rows_by_uid: dict[str, list[int]] = {}
    for i, uid in enumerate(batch.non_tensor_batch["uid"]):
        rows_by_uid.setdefault(uid, []).append(i)
    expected = [None] * len(batch)
    for rows in rows_by_uid.values():
        info = score_group(Problem(id="p", prompt="p", level=None, source="toy_math"), [texts[i] for i in rows],
                           EpisodeConfig(group_size=len(rows), min_votes=MIN_VOTES))
        for i, r in zip(rows, info["rewards"]):
            expected[i] = (0.0 if info["masked"] else float(r), bool(info["masked"]), info["majority"])
    return expected, lengths, rows_by_uid


def check_batch_manager(batch, tokenizer):
    from verl.utils.import_utils import load_extern_object
    from verl.workers.reward_manager import get_reward_manager_cls

    import cuma_env.integrations.verl as adapter

    cls = get_reward_manager_cls("cuma")
    check("batch manager registered as 'cuma'", cls is adapter.CuMaRewardManager and
          load_extern_object("pkg://cuma_env.integrations.verl", "CuMaRewardManager") is cls)
    # constructed as verl 0.7.0's load_reward_manager does, reward_kwargs from reward_model.reward_kwargs
    manager = cls(tokenizer=tokenizer, num_examine=1, compute_score=None, reward_fn_key="data_source",
                  min_votes=MIN_VOTES)
    out = manager(batch, return_dict=True)
    tensor, extra = out["reward_tensor"], out["reward_extra_info"]
    expected, lengths, rows_by_uid = expected_by_score_group(batch, tokenizer)
    on_last = all(tensor[i, lengths[i] - 1].item() == r and tensor[i].sum().item() == r
                  for i, (r, _, _) in enumerate(expected))
    check("token-level reward: the uid's vote on the last valid token", tensor.dtype == torch.float32 and
          tensor.shape == batch.batch["responses"].shape and on_last)
    same = all(extra["masked"][i] == m and extra["majority"][i] == lab for i, (_, m, lab) in enumerate(expected))
    check("rewards, masks, majorities equal score_group per uid (rows shuffled)", same)
    from cuma_env import is_equivalent

    voting = [rows for rows in rows_by_uid.values() if not extra["masked"][rows[0]]]
    masked = [rows for rows in rows_by_uid.values() if extra["masked"][rows[0]]]
    labels = [extra["majority"][rows[0]] for rows in voting]
    half = [rows for rows in voting if is_equivalent(extra["majority"][rows[0]], "0.5")]
    check("design of the batch: 3 voting groups, 1 masked; \\frac{1}{2}, 0.5, 1/2 form one cluster",
          len(voting) == 3 and len(masked) == 1 and all(extra["score"][i] == 0.0 for i in masked[0]) and
          len(half) == 1 and sorted(extra["score"][i] for i in half[0]) == [0.0, 1.0, 1.0, 1.0],
          f"majorities {labels}")
    # the trainer's next steps: extra info into non_tensor_batch, GRPO advantage by uid
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    batch.non_tensor_batch.update({k: np.array(v) for k, v in extra.items()})
    batch.batch["token_level_scores"] = tensor
    batch.batch["token_level_rewards"] = tensor
    response_len = batch.batch["responses"].shape[-1]  # verl's compute_response_mask (its module needs cachetools)
    batch.batch["response_mask"] = batch.batch["attention_mask"][:, -response_len:]
    adv, _ = compute_grpo_outcome_advantage(token_level_rewards=tensor, response_mask=batch.batch["response_mask"],
                                            index=batch.non_tensor_batch["uid"])
    zero_masked = all(adv[i].abs().sum().item() == 0.0 for i in masked[0])
    signal = all((adv[i].sum().item() > 0) == (extra["score"][i] > 0) for rows in rows_by_uid.values()
                 if not extra["masked"][rows[0]] for i in rows)
    check("verl GRPO advantage: zero for the masked group, sign of the vote elsewhere", zero_masked and signal)
    return out


def reward_loop_config(tokenizer_dir: str, timeout_s: float):
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "actor_rollout_ref": {"model": {"path": tokenizer_dir, "tokenizer_path": None},
                              "rollout": {"n": N, "val_kwargs": {"n": 1}}},
        "reward": {"num_workers": 1,
                   "custom_reward_function": {"path": None, "name": "compute_score"},
                   "reward_manager": {"source": "importlib", "name": "CuMaRewardLoopManager",
                                      "module": {"path": "pkg://cuma_env.integrations.verl", "name": None}},
                   "reward_model": {"enable": False, "model_path": None},
                   "sandbox_fusion": {"url": None},
                   "reward_kwargs": {"min_votes": MIN_VOTES, "group_timeout_s": timeout_s}},
    })


def streamed_sample(batch, i):
    """Row i as verl's agent loop sends a finished rollout to a reward worker: unpadded, per-sample fields."""
    from tensordict import TensorDict
    from verl import DataProto

    plen = batch.batch["prompts"].shape[-1]
    mask = batch.batch["attention_mask"][i]
    prompt = batch.batch["prompts"][i][plen - int(mask[:plen].sum()):]
    response = batch.batch["responses"][i][:int(mask[plen:].sum())]
    ids = torch.cat([prompt, response])
    tensors = TensorDict({"prompts": prompt[None], "responses": response[None], "input_ids": ids[None],
                          "attention_mask": torch.ones_like(ids)[None],
                          "position_ids": torch.arange(len(ids))[None]}, batch_size=1)
    keys = ("uid", "data_source", "reward_model", "extra_info")
    return DataProto(batch=tensors, non_tensor_batch={k: _objects([batch.non_tensor_batch[k][i]]) for k in keys})


def check_reward_loop(batch, tokenizer_dir, reference):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    from cuma_env import is_equivalent
    from cuma_env.integrations.verl import CuMaRewardLoopManager

    timeout_s = 30.0
    worker = RewardLoopWorker(reward_loop_config(tokenizer_dir, timeout_s))
    check("reward loop: verl's RewardLoopWorker loads CuMaRewardLoopManager from config",
          isinstance(worker.reward_manager, CuMaRewardLoopManager))
    ref_extra = reference["reward_extra_info"]
    ties = {i for i, m in enumerate(ref_extra["majority"]) if ref_extra["masked"][i]}  # order-dependent labels

    t0 = time.perf_counter()
    outputs = worker.loop.run_until_complete(worker.compute_score_batch(batch))
    took = time.perf_counter() - t0
    rm_scores = CuMaRewardLoopManager.assemble_rm_scores(batch, [o["reward_score"] for o in outputs])
    check("reward loop, batch-wise (compute_score_batch): same rm_scores as the batch manager",
          torch.equal(rm_scores, reference["reward_tensor"]) and took < timeout_s, f"{took:.2f}s")

    rng = random.Random(SEED + 1)
    order = list(range(len(batch)))
    rng.shuffle(order)

    async def stream():
        async def one(i):
            await asyncio.sleep(rng.random() * 0.05)
            return i, await worker.compute_score(streamed_sample(batch, i))
        return dict(await asyncio.gather(*(one(i) for i in order)))

    t0 = time.perf_counter()
    streamed = worker.loop.run_until_complete(stream())
    took = time.perf_counter() - t0
    # a cluster's label is its earliest member's spelling, so arrival order may spell it differently
    mismatched = [i for i in range(len(batch)) if not (
        streamed[i]["reward_score"] == ref_extra["score"][i] and
        streamed[i]["reward_extra_info"]["masked"] == ref_extra["masked"][i] and
        (i in ties or is_equivalent(streamed[i]["reward_extra_info"]["majority"], ref_extra["majority"][i])))]
    ok = not mismatched
    gate = worker.reward_manager.rendezvous
    check("reward loop, streamed one sample at a time in random order: same rewards",
          ok and took < timeout_s and gate.waiting == 0 and gate.partial_groups == 0,
          f"{took:.2f}s" + (f", rows {mismatched} differ" if mismatched else ""))
    # verl's v1 trainer flags validation samples in the sample itself: they form groups of val_kwargs.n (1 here)
    sample = streamed_sample(batch, 0)
    sample.non_tensor_batch["validate"] = _objects([True])
    t0 = time.perf_counter()
    val = worker.loop.run_until_complete(worker.compute_score(sample))
    took = time.perf_counter() - t0
    check("reward loop, a validation sample: a group of val_kwargs.n, no wait",
          val["reward_extra_info"]["group_size"] == 1 and val["reward_extra_info"]["masked"] and took < timeout_s,
          f"{took:.2f}s")
    # verl's RewardLoopManager turns the per-sample outputs into non_tensor columns with np.array
    columns = {k: np.array([streamed[i]["reward_extra_info"][k] for i in range(len(batch))])
               for k in streamed[0]["reward_extra_info"]}
    check("reward loop extra info forms verl's non_tensor columns", all(len(v) == len(batch) for v in columns.values()),
          f"keys {sorted(columns)}")
    try:
        CuMaRewardLoopManager(config=_with_workers(reward_loop_config(tokenizer_dir, timeout_s), 8),
                              tokenizer=worker.input_tokenizer, compute_score=None)
        refused = False
    except ValueError as exc:
        refused = "num_workers=1" in str(exc)
    check("reward loop refuses reward.num_workers != 1 (a group must meet in one worker)", refused)


def _with_workers(config, n):
    config.reward.num_workers = n
    return config


def main() -> int:
    import tensordict
    import transformers
    import verl

    import cuma_env

    versions = {"python": sys.version.split()[0], "verl": verl.__version__, "torch": torch.__version__,
                "tensordict": tensordict.__version__, "transformers": transformers.__version__,
                "numpy": np.__version__, "cuma_env": cuma_env.__file__}
    print(json.dumps(versions), flush=True)
    heavy = sorted(m for m in ("torchrl", "agents", "curricula") if m in sys.modules)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer = build_tokenizer(tokenizer_dir)
        batch = build_batch(tokenizer)
        reference = check_batch_manager(batch, tokenizer)
        check_reward_loop(build_batch(tokenizer), tokenizer_dir, reference)
    heavy = sorted(set(heavy) | {m for m in ("torchrl", "agents", "curricula") if m in sys.modules})
    check("the adapter imported no agent stack (torchrl, agents, curricula)", not heavy, str(heavy))
    failed = [name for name, ok, _ in RESULTS if not ok]
    print(json.dumps({"checks": len(RESULTS), "failed": failed, "seconds": round(time.perf_counter() - t0, 2),
                      **versions}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
