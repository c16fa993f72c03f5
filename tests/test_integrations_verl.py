"""The verl adapter's grouping, voting and token rewards, in-process on a batch shaped like verl's.

verl itself cannot join this environment (its pins: tensordict<=0.10, transformers<5.11, numpy>=2; torchrl
0.14.1 needs tensordict 0.14), so these tests drive the trainer-independent part (`verl_groups`,
`verl_rendezvous`) on `VerlBatchStandIn`; `benchmarks/check_verl.sh` runs the registered managers inside
real verl in a venv of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import random
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)

from cuma_env import EpisodeConfig, Problem, score_group  # noqa: E402
from cuma_env.integrations.verl_groups import (  # noqa: E402
    EXTRA_KEYS,
    episode_config,
    expected_group_size,
    group_rows,
    read_sample,
    score_members,
    score_verl_batch,
)
from cuma_env.integrations.verl_rendezvous import GroupRendezvous  # noqa: E402

N = 4
PROMPT_LEN, RESPONSE_LEN = 48, 40
# (question, ground truth, the n completions a policy returned)
DATASET = [
    ("What is 2+2?", "4", ["so \\boxed{4}", "I get \\boxed{4}", "\\boxed{5}", "it is \\boxed{4}"]),
    ("What is 3*3?", "9", ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "no idea"]),       # no answer has 2 votes
    ("What is 10-7?", "3", ["hmm", "", "\\boxed{3}", "\\boxed{3}"]),                    # two unanswered
]


class VerlBatchStandIn:
    """Stands in for verl's `DataProto`, which cannot be imported here (verl's pins conflict with torchrl's).

    It has the fields verl's reward managers read: `.batch` (a dict of tensors: `prompts` left-padded,
    `responses` right-padded, `attention_mask` over both), `.non_tensor_batch` (numpy object arrays: `uid`,
    `data_source`, `reward_model` with `ground_truth`, `extra_info`) and `.meta_info`; `data[i:j]` slices rows
    as `DataProto.__getitem__` does for the reward loop's one-sample batches.
    """

    def __init__(self, batch: dict, non_tensor_batch: dict, meta_info: dict | None = None):
        self.batch, self.non_tensor_batch, self.meta_info = batch, non_tensor_batch, dict(meta_info or {})

    def __len__(self) -> int:
        return int(self.batch["responses"].shape[0])

    def __getitem__(self, rows: slice) -> VerlBatchStandIn:
        return VerlBatchStandIn({k: v[rows] for k, v in self.batch.items()},
                                {k: v[rows] for k, v in self.non_tensor_batch.items()}, self.meta_info)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """The byte-level BPE that the real-verl check builds (`benchmarks/check_verl.py`): trained here on its
    texts, no download, loaded as a HF fast tokenizer."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "check_verl.py"
    spec = importlib.util.spec_from_file_location("check_verl", path)
    check_verl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_verl)
    return check_verl.build_tokenizer(str(tmp_path_factory.mktemp("verl-tokenizer")))


def _pad(ids: list[int], length: int, pad: int, left: bool) -> tuple[list[int], list[int]]:
    ids = ids[:length]
    fill = [pad] * (length - len(ids))
    mask = [1] * len(ids)
    return (fill + ids, [0] * len(fill) + mask) if left else (ids + fill, mask + [0] * len(fill))


def build_batch(tokenizer, dataset=DATASET, n=N, seed=0, shuffle=False, eos=True) -> VerlBatchStandIn:
    """The batch as verl's PPO trainer builds it: a uid per prompt, `repeat(n, interleave=True)`, then the
    rollout's prompts/responses/attention_mask; `shuffle` reorders rows as `balance_batch` may."""
    rng = random.Random(seed)
    uids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in dataset]
    rows = [(k, j) for k in range(len(dataset)) for j in range(n)]  # interleaved repeat: a prompt's n rows adjacent
    if shuffle:
        rng.shuffle(rows)
    pad = tokenizer.pad_token_id
    prompts, responses, masks = [], [], []
    for k, j in rows:
        p_ids, p_mask = _pad(tokenizer.encode(dataset[k][0]), PROMPT_LEN, pad, left=True)
        r_tokens = tokenizer.encode(dataset[k][2][j]) + ([tokenizer.eos_token_id] if eos else [])
        r_ids, r_mask = _pad(r_tokens, RESPONSE_LEN, pad, left=False)
        prompts.append(p_ids)
        responses.append(r_ids)
        masks.append(p_mask + r_mask)

    def column(values):
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    batch = {"prompts": torch.tensor(prompts), "responses": torch.tensor(responses),
             "attention_mask": torch.tensor(masks)}
    non_tensor = {"uid": column([uids[k] for k, _ in rows]), "data_source": column(["toy_math"] * len(rows)),
                  "reward_model": column([{"style": "rule", "ground_truth": dataset[k][1]} for k, _ in rows]),
                  "extra_info": column([{"index": k, "split": "train"} for k, _ in rows])}
    return VerlBatchStandIn(batch, non_tensor)


def _expected_by_score_group(data, tokenizer, config: EpisodeConfig):
    """Each uid's rewards straight from `score_group` (the gym face's scorer), in row order."""
    lengths = data.batch["attention_mask"][:, PROMPT_LEN:].sum(-1).tolist()
    texts = [tokenizer.decode(data.batch["responses"][i][:lengths[i]], skip_special_tokens=True)
             for i in range(len(data))]
    expected = [None] * len(data)
    for rows in group_rows(list(data.non_tensor_batch["uid"])):
        problem = Problem(id="p", prompt="p", level=None, source="toy_math")
        info = score_group(problem, [texts[i] for i in rows], dataclasses.replace(config, group_size=len(rows)))
        for i, r in zip(rows, info["rewards"]):
            expected[i] = (0.0 if info["masked"] else r, info["masked"], info["majority"])
    return expected, lengths


@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_rewards_match_score_group_per_uid(tokenizer, shuffle):
    data = build_batch(tokenizer, shuffle=shuffle, seed=3)
    config = episode_config({"min_votes": 2})
    out = score_verl_batch(data, tokenizer, config)
    expected, lengths = _expected_by_score_group(data, tokenizer, config)
    tensor, extra = out["reward_tensor"], out["reward_extra_info"]
    assert tensor.shape == data.batch["responses"].shape and tensor.dtype == torch.float32
    for i, (reward, masked, majority) in enumerate(expected):
        assert tensor[i, lengths[i] - 1].item() == reward
        assert tensor[i].sum().item() == reward  # nothing anywhere else in the row
        assert extra["score"][i] == reward and extra["masked"][i] == masked and extra["majority"][i] == majority
    assert set(extra) == set(EXTRA_KEYS) and all(len(v) == len(data) for v in extra.values())
    by_question = {}
    for i, uid in enumerate(data.non_tensor_batch["uid"]):
        by_question.setdefault(uid, []).append(i)
    votes = [(extra["masked"][rows[0]], extra["majority"][rows[0]]) for rows in by_question.values()]
    # DATASET's design: 3*3 finds no two agreeing answers (its label is the earliest tied singleton), masked
    assert sorted(label for masked, label in votes if not masked) == ["3", "4"]
    assert [label in {"1", "2", "3"} for masked, label in votes if masked] == [True]
    masked_rows = [i for i in range(len(data)) if extra["masked"][i]]
    assert len(masked_rows) == N and all(extra["score"][i] == 0.0 for i in masked_rows)


def test_grouping_follows_uid_not_position(tokenizer):
    # Row order within a group is kept, so the same texts in another batch order give the same per-text rewards.
    config = episode_config({"min_votes": 2})
    plain, mixed = build_batch(tokenizer, seed=5), build_batch(tokenizer, seed=5, shuffle=True)

    def per_text(data):
        extra = score_verl_batch(data, tokenizer, config)["reward_extra_info"]
        return sorted(zip(data.non_tensor_batch["uid"], extra["answer"], extra["score"]), key=str)

    assert per_text(plain) == per_text(mixed)


def test_labels_only_feed_the_acc_diagnostic(tokenizer):
    config = episode_config({"min_votes": 2})
    right = build_batch(tokenizer)
    wrong = build_batch(tokenizer, dataset=[(q, "999", cs) for q, _, cs in DATASET])
    a, b = (score_verl_batch(d, tokenizer, config) for d in (right, wrong))
    assert torch.equal(a["reward_tensor"], b["reward_tensor"])  # label-free: the reference changes nothing
    assert a["reward_extra_info"]["acc"][:N] == [1.0, 1.0, 0.0, 1.0]
    assert b["reward_extra_info"]["acc"][:N] == [0.0] * N


def test_empty_votes_and_min_votes_settings(tokenizer):
    unanswered = [("What is 1+1?", "2", ["hmm", "", "well", "\\boxed{2}"])]
    data = build_batch(tokenizer, dataset=unanswered)
    never = score_verl_batch(data, tokenizer, episode_config({"min_votes": 2}))["reward_extra_info"]
    assert never["masked"] == [True] * N  # unanswered never vote: the largest cluster has one member
    votes = score_verl_batch(data, tokenizer, episode_config({"min_votes": 2, "empty_votes": True}))
    assert votes["reward_extra_info"]["masked"] == [False] * N
    assert votes["reward_extra_info"]["score"] == [1.0, 1.0, 1.0, 0.0]  # TTRL's convention: emptiness wins
    share = score_verl_batch(data, tokenizer, episode_config({"min_votes": 0.25}))["reward_extra_info"]
    assert share["masked"] == [False] * N and share["score"] == [0.0, 0.0, 0.0, 1.0]


def test_group_smaller_than_min_votes_is_masked(tokenizer):
    # A validation pass with one sample per prompt: a count of 2 cannot be reached, a share of 0.5 can.
    single = build_batch(tokenizer, dataset=[(q, t, cs[:1]) for q, t, cs in DATASET], n=1)
    counted = score_verl_batch(single, tokenizer, episode_config({"min_votes": 2}))
    assert counted["reward_extra_info"]["masked"] == [True] * 3 and counted["reward_tensor"].sum().item() == 0.0
    shared = score_verl_batch(single, tokenizer, episode_config({"min_votes": 0.5}))["reward_extra_info"]
    assert shared["masked"] == [False, False, True] and shared["score"] == [1.0, 1.0, 0.0]  # "hmm" has no answer


def test_settings_are_checked(tokenizer):
    assert episode_config({"min_votes": 2.0}).min_votes == 2  # a count as YAML may spell it
    big = episode_config({"min_votes": 10})  # above the placeholder group size: accepted, checked per group
    assert big.min_votes == 10
    with pytest.raises(ValueError, match="unknown CuMa reward setting"):
        episode_config({"min_vote": 2})
    with pytest.raises(ValueError):
        episode_config({"reward": "no_such_reward"})
    data = build_batch(tokenizer)
    del data.non_tensor_batch["uid"]
    with pytest.raises(KeyError, match="uid"):
        score_verl_batch(data, tokenizer, episode_config())


def test_empty_response_reward_sits_on_position_zero(tokenizer):
    data = build_batch(tokenizer, dataset=[("What is 0+0?", "0", ["", "", "", ""])], eos=False)
    out = score_verl_batch(data, tokenizer, episode_config({"min_votes": 1, "reward": "majority"}))
    assert data.batch["attention_mask"][:, PROMPT_LEN:].sum().item() == 0
    assert out["reward_tensor"].shape == (N, RESPONSE_LEN) and out["reward_tensor"].abs().sum().item() == 0.0


def test_problem_stream_hears_each_group(tokenizer):
    class Recorder:
        def __init__(self):
            self.infos = []

        def next_problem(self):
            raise AssertionError("a trainer chooses prompts itself")

        def observe(self, info):
            self.infos.append(info)

    recorder = Recorder()
    score_verl_batch(build_batch(tokenizer, shuffle=True), tokenizer, episode_config(), stream=recorder)
    assert sorted(info["problem_id"] for info in recorder.infos) == ["0", "1", "2"]
    assert all(info["source"] == "toy_math" and info["group_size"] == N for info in recorder.infos)


# ---- the reward loop (verl >= 0.7.1): samples arrive one at a time and meet in a GroupRendezvous ----

def _run_samples(data, tokenizer, rendezvous, order, delays):
    async def one(i, delay):
        await asyncio.sleep(delay)
        sample = data[i:i + 1]  # what verl's reward worker hands `run_single`
        uid, text, problem = read_sample(sample, tokenizer)
        return i, await rendezvous.join(uid, expected_group_size(sample, N, 1), (text, problem))

    async def main():
        return await asyncio.gather(*(one(i, d) for i, d in zip(order, delays)))

    return dict(asyncio.run(main()))


def test_rendezvous_gives_each_sample_its_groups_vote(tokenizer):
    data = build_batch(tokenizer, seed=7)
    config = episode_config({"min_votes": 2})
    rng = random.Random(7)
    order = list(range(len(data)))
    rng.shuffle(order)
    delays = [0.002 * k for k in range(len(order))]  # samples finish in `order`, one by one
    rendezvous = GroupRendezvous(lambda members: score_members(members, config), timeout_s=30)
    results = _run_samples(data, tokenizer, rendezvous, order, delays)
    whole = score_verl_batch(data, tokenizer, config)["reward_extra_info"]
    for i, (reward, extra) in results.items():
        assert set(extra) == set(EXTRA_KEYS)
        assert extra["majority"] == whole["majority"][i] and extra["masked"] == whole["masked"][i]
        assert reward == extra["score"] and extra["group_size"] == N
        if whole["majority"][i] is not None:  # no tie in DATASET's voting groups: arrival order does not matter
            assert reward == whole["score"][i]
    assert rendezvous.waiting == 0 and rendezvous.partial_groups == 0


def test_rendezvous_times_out_a_group_that_never_fills_and_reopens_a_uid(tokenizer):
    data = build_batch(tokenizer, dataset=DATASET[:1])
    config = episode_config({"min_votes": 2})
    rendezvous = GroupRendezvous(lambda members: score_members(members, config), timeout_s=0.2)

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = await asyncio.gather(*(rendezvous.join("u", N, read_sample(data[i:i + 1], tokenizer)[1:])
                                       for i in range(N - 1)))
        waited = loop.time() - t0
        # the same uid again (a padding copy, or a uid reused by a later step): a new group, not a leftover
        again = await asyncio.gather(*(rendezvous.join("u", N, read_sample(data[i:i + 1], tokenizer)[1:])
                                       for i in range(N)))
        return first, waited, again

    first, waited, again = asyncio.run(main())
    assert waited >= 0.2 and rendezvous.partial_groups == 1
    assert [extra["group_size"] for _, extra in first] == [3, 3, 3]
    assert [reward for reward, _ in first] == [1.0, 1.0, 0.0]  # "4", "4", "5": still a 2-vote majority
    assert [extra["group_size"] for _, extra in again] == [N] * N and rendezvous.partial_groups == 1
    assert [reward for reward, _ in again] == [1.0, 1.0, 0.0, 1.0]


def test_rendezvous_failure_reaches_every_waiter():
    def boom(members):
        raise RuntimeError("scorer failed")

    rendezvous = GroupRendezvous(boom, timeout_s=30)

    async def main():
        return await asyncio.gather(*(rendezvous.join("u", 2, m) for m in ("a", "b")), return_exceptions=True)

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError] and rendezvous.waiting == 0


def test_expected_group_size_reads_the_validate_flag(tokenizer):
    data = build_batch(tokenizer)[0:1]
    assert expected_group_size(data, 8, 1) == 8
    data.meta_info["validate"] = True  # verl's legacy trainer flags a validation batch here
    assert expected_group_size(data, 8, 2) == 2
    flagged = build_batch(tokenizer)[0:1]
    flagged.non_tensor_batch["validate"] = np.array([True], dtype=object)  # verl's v1 trainer: in the sample
    assert expected_group_size(flagged, 8, 3) == 3


def test_score_members_is_one_group_in_arrival_order():
    config = episode_config({"min_votes": 2})
    members = [("\\boxed{7}", None), ("\\boxed{8}", None), ("\\boxed{7}", None)]
    out = score_members(members, config)
    assert [r for r, _ in out] == [1.0, 0.0, 1.0] and {e["majority"] for _, e in out} == {"7"}


def test_pure_part_imports_neither_torch_nor_verl():
    code = ("import sys, cuma_env.integrations.verl_groups, cuma_env.integrations.verl_rendezvous; "
            "print(sorted(m for m in ('torch', 'verl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("verl") is not None, reason="verl is installed here")
def test_adapter_names_the_extra_when_verl_is_missing():
    with pytest.raises(ImportError, match=r"cuma-gym\[verl\]"):
        import cuma_env.integrations.verl  # noqa: F401
