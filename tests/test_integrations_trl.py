"""The TRL adapter: CuMa's group reward, datasets, curriculum feed and callback inside TRL's `GRPOTrainer`.

Fast tests call the reward function and the data pieces directly; the slow ones train the tiny base with
TRL for a step or three (the advantages TRL computes for masked groups, the example with a curriculum that
advances and resumes, and two processes that split a group).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("trl", reason='TRL is not installed: pip install "cuma-gym[trl]"')

from cuma_env.catalog import make_source  # noqa: E402
from cuma_env.episode import EpisodeConfig, score_group  # noqa: E402
from cuma_env.integrations import trl as cuma_trl  # noqa: E402
from cuma_env.integrations.trl import CurriculumFeed, catalog_dataset, make_reward_func  # noqa: E402
from cuma_env.integrations.trl_callback import STATE_FILE, check_config  # noqa: E402
from cuma_env.problems import Problem  # noqa: E402
from cuma_env.prompting import format_prompt  # noqa: E402
from curricula import CurriculumStream  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
G = 4


def _batch(groups: list[tuple[str, list[str]]], answers: dict[str, str] | None = None, chat: bool = False):
    """TRL's reward kwargs for consecutive groups: [(problem_id, G completions), ...]."""
    prompts, completions, columns = [], [], {"problem_id": [], "level": [], "source": []}
    for pid, texts in groups:
        for text in texts:
            prompts.append([{"role": "user", "content": f"What is {pid}?"}] if chat else f"What is {pid}?")
            completions.append([{"role": "assistant", "content": text}] if chat else text)
            columns["problem_id"].append(pid)
            columns["level"].append(1)
            columns["source"].append("arith")
    if answers is not None:
        columns["answer"] = [answers[pid] for pid in columns["problem_id"]]
    return prompts, completions, columns


AGREE = ("p1", ["\\boxed{4}", "so \\boxed{4}", "\\boxed{4.0}", "\\boxed{5}"])
SPLIT = ("p2", ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "no answer"])


# --- the reward function ---------------------------------------------------------------------------
@pytest.mark.parametrize("chat", [False, True])
def test_reward_votes_per_block_and_masks_with_none(chat):
    prompts, completions, columns = _batch([AGREE, SPLIT], chat=chat)
    reward = make_reward_func("masked_majority", min_votes=2, group_size=G)
    out = reward(prompts, completions, None, **columns)
    config = EpisodeConfig(group_size=G, min_votes=2)
    expected = score_group(Problem(id="p1", prompt="What is p1?", level=1, source="arith"), AGREE[1], config)
    assert out[:G] == expected["rewards"] == [1.0, 1.0, 1.0, 0.0]
    assert out[G:] == [None] * G  # the masked group: TRL gives it zero advantage
    assert [i["masked"] for i in reward.last_infos] == [False, True]
    assert reward.__name__ == "cuma_masked_majority"


def test_reward_logs_vote_diagnostics_through_log_metric():
    same_answer = ("p3", ["\\boxed{4}"] * G)
    prompts, completions, columns = _batch([AGREE, SPLIT, same_answer])
    logged: dict[str, float] = {}
    make_reward_func(min_votes=2, group_size=G)(prompts, completions, None, **columns,
                                                log_metric=lambda name, value: logged.__setitem__(name, value))
    assert logged["cuma/mask_rate"] == pytest.approx(1 / 3)
    assert logged["cuma/agreement"] == pytest.approx((3 / 4 + 1 / 4 + 1) / 3)
    assert logged["cuma/parse_rate"] == pytest.approx((1 + 3 / 4 + 1) / 3)
    assert logged["cuma/collapse"] == pytest.approx(2 / 3)  # two of three prompts' majorities are "4"
    assert "cuma/majority_acc" not in logged and "cuma/pass_rate" not in logged  # no labels were read


def test_label_free_reward_never_reads_the_answer_column():
    right = _batch([AGREE, SPLIT], answers={"p1": "4", "p2": "1"})
    wrong = _batch([AGREE, SPLIT], answers={"p1": "999", "p2": "7"})
    reward = make_reward_func(min_votes=2, group_size=G)
    assert reward(right[0], right[1], None, **right[2]) == reward(wrong[0], wrong[1], None, **wrong[2])
    assert all("correct" not in i and "majority_correct" not in i for i in reward.last_infos)
    # diagnostics only on request, and still no change to the rewards
    logged: dict[str, float] = {}
    diag = make_reward_func(min_votes=2, group_size=G, label_diagnostics=True)
    assert diag(wrong[0], wrong[1], None, **wrong[2], log_metric=logged.__setitem__) == \
        reward(right[0], right[1], None, **right[2])
    assert logged["cuma/majority_acc"] == 0.0


def test_ground_truth_reads_answers_and_says_when_there_are_none():
    prompts, completions, columns = _batch([AGREE], answers={"p1": "5"})
    assert make_reward_func("ground_truth", group_size=G)(prompts, completions, None, **columns) == [0, 0, 0, 1]
    del columns["answer"]
    with pytest.raises(ValueError, match="answer` column"):
        make_reward_func("ground_truth", group_size=G)(prompts, completions, None, **columns)


def test_rewards_trl_cannot_feed_are_refused():
    with pytest.raises(ValueError, match="per-token statistics"):
        make_reward_func("self_certainty")
    with pytest.raises(ValueError, match="split_groups"):
        make_reward_func(split_groups="drop")


def test_slices_that_split_groups_stop_with_one_line(monkeypatch):
    prompts, completions, columns = _batch([AGREE, SPLIT])
    cut = {k: v[:6] for k, v in columns.items()}
    reward = make_reward_func(group_size=G, split_groups="error")
    with pytest.raises(ValueError, match="num_generations") as single:
        reward(prompts[:6], completions[:6], None, **cut)
    assert "group_size=4" in str(single.value)
    monkeypatch.setattr(cuma_trl, "_world", lambda: (2, 1))
    with pytest.raises(ValueError) as split:
        reward(prompts[:6], completions[:6], None, **cut)
    message = str(split.value)
    assert "\n" not in message
    for setting in ("per_device_train_batch_size", "steps_per_generation", "num_generations"):
        assert setting in message


def test_a_block_mixing_prompts_is_an_error():
    prompts, completions, columns = _batch([AGREE, SPLIT])
    with pytest.raises(ValueError, match="mixes problems"):  # num_generations=2 with group_size=4
        make_reward_func(group_size=G)(prompts[2:6], completions[2:6], None, **{k: v[2:6] for k, v in columns.items()})


def test_module_says_how_to_install_trl_when_it_is_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    monkeypatch.delitem(sys.modules, "cuma_env.integrations.trl")
    with pytest.raises(ImportError, match=r'pip install "cuma-gym\[trl\]"'):
        importlib.import_module("cuma_env.integrations.trl")
    monkeypatch.undo()
    importlib.import_module("cuma_env.integrations.trl")


# --- datasets ------------------------------------------------------------------------------------
def test_catalog_dataset_has_prompt_level_and_id_columns():
    source = make_source("CuMa-Arith-v0")
    chat = catalog_dataset("CuMa-Arith-v0", levels=[1, 3], n_per_level=5)
    plain = catalog_dataset("CuMa-Arith-v0", levels=[1, 3], n_per_level=5, chat=False, with_answer=True)
    assert len(chat) == 10 and set(chat.column_names) == {"prompt", "problem_id", "level", "source"}
    assert [r["level"] for r in chat] == [1] * 5 + [3] * 5
    first = source.get(1, 0)
    assert chat[0]["prompt"] == [{"role": "user", "content": format_prompt(first, "compact")}]
    assert plain[0]["prompt"] == format_prompt(first, "compact") and plain[0]["answer"] == first.answer
    assert chat[0]["problem_id"] == first.id


def _stream(seed: int = 0) -> CurriculumStream:
    return CurriculumStream({"name": "agreement_gated", "window": 2, "min_steps": 2},
                            make_source("CuMa-Arith-v0"), seed=seed)


def _info(problem: Problem, agreement: float = 1.0) -> dict:
    count = round(agreement * 8)
    return {"problem_id": problem.id, "level": problem.level, "agreement": agreement, "masked": False,
            "parse_rate": 1.0, "majority": "1", "majority_count": count, "group_size": 8,
            "rewards": [1.0] * count + [0.0] * (8 - count), "reward_name": "masked_majority"}


def test_feed_resumes_with_the_draws_its_trainer_had_not_voted_on():
    feed = CurriculumFeed(_stream(), "CuMa-Arith-v0")
    drawn = [feed.next_problem() for _ in range(3)]
    for p in drawn[:2]:
        feed.observe(_info(p))
    drawn.append(feed.next_problem())  # drawn ahead, after two votes: its pre-state differs from drawn[2]'s
    state = json.loads(json.dumps(feed.state_dict()))
    assert len(state["pending"]) == 2 and feed.pending == 2
    later = []
    for p in drawn[2:]:
        feed.observe(_info(p))
    later = [feed.next_problem() for _ in range(5)]

    resumed = CurriculumFeed(_stream(), "CuMa-Arith-v0")
    resumed.load_state_dict(state)
    replayed = [resumed.next_problem() for _ in range(2)]
    assert [p.id for p in replayed] == [p.id for p in drawn[2:]]
    for p in replayed:
        resumed.observe(_info(p))
    assert [p.id for p in (resumed.next_problem() for _ in range(5))] == [p.id for p in later]
    assert resumed.stream.state_dict() == feed.stream.state_dict()


def test_feed_forwards_only_groups_of_problems_it_drew():
    feed = CurriculumFeed(_stream(), "CuMa-Arith-v0")
    problem = feed.next_problem()
    foreign = make_source("CuMa-Arith-v0", split="test").get(2, 0)
    feed.observe(_info(foreign))  # e.g. an evaluation group
    assert feed.stream.observed == 0 and feed.ignored == 1
    feed.observe(_info(problem))
    feed.observe(_info(problem))  # heard once only
    assert feed.stream.observed == 1 and feed.observed == 1


def test_feed_dataset_streams_the_feeds_draws():
    feed = CurriculumFeed(_stream(), "CuMa-Arith-v0", chat=False)
    rows = []
    for row in feed.dataset():
        rows.append(row)
        if len(rows) == 3:
            break
    reference = _stream()
    expected = [reference.next_problem() for _ in range(3)]
    assert [r["problem_id"] for r in rows] == [p.id for p in expected]
    assert rows[0]["prompt"] == format_prompt(expected[0], "compact") and feed.drawn == 3


def test_config_checks_name_the_setting(tmp_path):
    from trl import GRPOConfig

    reward = make_reward_func(group_size=8)
    feed = CurriculumFeed(_stream(), "CuMa-Arith-v0")

    def config(**kw):
        return GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=8,
                          **kw)

    check_config(config(num_generations=8), reward)
    with pytest.raises(ValueError, match="num_generations=4"):
        check_config(config(num_generations=4), reward)
    with pytest.raises(ValueError, match="shuffle_dataset=False"):
        check_config(config(num_generations=8), reward, feed)
    with pytest.raises(ValueError, match="ignore_data_skip=True"):
        check_config(config(num_generations=8, shuffle_dataset=False), reward, feed)
    check_config(config(num_generations=8, shuffle_dataset=False, ignore_data_skip=True), reward, feed)


def test_trainer_construction_stops_on_a_group_size_mismatch(tmp_path):
    from trl import GRPOConfig, GRPOTrainer

    from agents.tiny.model import build_tiny_model
    from cuma_env.integrations.trl import CuMaCallback

    model, tokenizer = build_tiny_model(seed=0)  # random weights: construction only, nothing is generated
    reward = make_reward_func(group_size=4)  # a divisor of 8: votes on half groups, silently, without the check
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=8,
                      num_generations=8, bf16=False, activation_checkpointing=False)
    with pytest.raises(ValueError, match="num_generations=8 but the CuMa reward votes on groups of 4"):
        GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward, args=args,
                    train_dataset=catalog_dataset(levels=[1], n_per_level=4), callbacks=[CuMaCallback(reward)])


# --- TRL runs (slow) -----------------------------------------------------------------------------
@pytest.mark.slow
def test_masked_groups_reach_trl_with_zero_advantage(tiny_base_dir, tmp_path):
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from agents.tiny.model import load_tiny_base
    from cuma_env.integrations.trl import CuMaCallback

    seen: dict[str, list[float]] = {}

    class Capture(GRPOTrainer):  # the rewards TRL gathered and the advantages it computed from them
        def _calculate_rewards(self, *args, **kwargs):
            rewards = super()._calculate_rewards(*args, **kwargs)
            seen["rewards"] = rewards[:, 0].tolist()
            return rewards

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            seen["advantages"] = out["advantages"].tolist()
            return out

    model, tokenizer = load_tiny_base(tiny_base_dir)
    reward = make_reward_func(min_votes=5, group_size=8)  # masked unless 5 of 8 agree
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=80, num_generations=8,
                      max_completion_length=48, temperature=1.0, use_cpu=True, report_to="none",
                      save_strategy="no", seed=0, disable_tqdm=True, bf16=False, activation_checkpointing=False)
    trainer = Capture(model=model, processing_class=tokenizer, reward_funcs=reward, args=args,
                      train_dataset=catalog_dataset(n_per_level=2), callbacks=[CuMaCallback(reward)])
    trainer.train()
    infos = reward.last_infos  # two problems of each level, from easy (agreement) to hard (disagreement)
    assert len(infos) == 10 and len(seen["advantages"]) == 80
    masked = [g for g, info in enumerate(infos) if info["masked"]]
    taught = [g for g, info in enumerate(infos) if not info["masked"] and len(set(info["rewards"])) > 1]
    assert masked and taught, f"seed 0 should give both a masked and a mixed group: {infos}"
    for g, info in enumerate(infos):
        rows = slice(8 * g, 8 * g + 8)
        if info["masked"]:
            assert all(math.isnan(r) for r in seen["rewards"][rows])
            assert seen["advantages"][rows] == [0.0] * 8
        else:
            r = torch.tensor(info["rewards"])
            expected = (r - r.mean()) / (r.std() + 1e-4)  # TRL's group scaling of the rewards we returned
            assert torch.allclose(torch.tensor(seen["advantages"][rows]), expected, atol=1e-5)


def _load_example():
    spec = importlib.util.spec_from_file_location("trl_grpo_example", REPO / "examples" / "trl_grpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_curriculum_advances_and_resumes_from_trl_checkpoints(tiny_base_dir, tmp_path):
    example = _load_example()
    out = tmp_path / "run"
    first = example.main(["--steps", "3", "--save-every", "2", "--out", str(out), "--quiet"])
    assert first["steps"] == 3 and first["curriculum"]["observed"] == 3 * 16
    assert first["final_level"] > 1, first["rows"]  # the label-free gate promoted during the TRL run
    saved = json.loads((out / "checkpoint-2" / STATE_FILE).read_text())
    assert len(saved["pending"]) == 16  # TRL had drawn step 3's prompts before step 2 was voted on

    resumed = example.main(["--steps", "3", "--out", str(out), "--resume", str(out / "checkpoint-2"), "--quiet"])
    assert [row["step"] for row in resumed["rows"]] == [3]
    assert resumed["rows"][0]["problems"] == first["rows"][2]["problems"]


TWO_PROCESS_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    import torch
    from trl import GRPOConfig, GRPOTrainer
    from agents.tiny.model import load_tiny_base
    from cuma_env.catalog import make_source
    from cuma_env.integrations.trl import CuMaCallback, CurriculumFeed, catalog_dataset, make_reward_func
    from curricula import CurriculumStream

    torch.set_num_threads(1)
    base, out = sys.argv[1], Path(sys.argv[2])
    # 12 completions per process, groups of 8: the second group is split across the two processes
    def config(name):
        return GRPOConfig(output_dir=str(out / name), max_steps=1, per_device_train_batch_size=12,
                          num_generations=8, max_completion_length=16, temperature=1.0, use_cpu=True,
                          report_to="none", save_strategy="no", seed=0, disable_tqdm=True, shuffle_dataset=False,
                          ignore_data_skip=True, bf16=False, activation_checkpointing=False)
    result = {}
    model, tokenizer = load_tiny_base(base)
    reward = make_reward_func(group_size=8, split_groups="error")
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward, args=config("stop"),
                          train_dataset=catalog_dataset(levels=[1], n_per_level=6), callbacks=[CuMaCallback(reward)])
    try:
        trainer.train()
    except ValueError as exc:
        result["error"] = str(exc)
    seen = {}
    class Capture(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            seen["local_ids"] = [x["problem_id"] for x in inputs]
            return super()._generate_and_score_completions(inputs)
        def _calculate_rewards(self, *args, **kwargs):
            rewards = super()._calculate_rewards(*args, **kwargs)
            seen["rewards"] = [None if r != r else r for r in rewards[:, 0].tolist()]
            return rewards
    model, tokenizer = load_tiny_base(base)
    feed = CurriculumFeed(CurriculumStream("sequential", make_source("CuMa-Arith-v0"), seed=0), "CuMa-Arith-v0")
    reward = make_reward_func(group_size=8, stream=feed)
    trainer = Capture(model=model, processing_class=tokenizer, reward_funcs=reward, args=config("gather"),
                      train_dataset=feed.dataset(), callbacks=[CuMaCallback(reward)])
    trainer.train()
    result.update(seen, world=trainer.accelerator.num_processes, feed=feed.state_dict(),
                  infos=[{k: i[k] for k in ("problem_id", "rewards", "masked")} for i in reward.last_infos])
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps(result))
""")


@pytest.mark.slow
def test_two_processes_vote_on_whole_groups_or_stop_at_once(tiny_base_dir, tmp_path):
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), str(script), str(tiny_base_dir), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for result in ranks:  # split_groups="error": both processes stop at the first call with the one line
        assert "\n" not in result["error"] and "per_device_train_batch_size" in result["error"]
        assert "steps_per_generation" in result["error"] and "num_generations=8" in result["error"]
    assert all(r["world"] == 2 for r in ranks)
    # split_groups="gather" (default): both processes voted on the same three whole groups...
    infos = ranks[0]["infos"]
    assert len(infos) == 3 and ranks[1]["infos"] == infos
    local = ranks[0]["local_ids"] + ranks[1]["local_ids"]
    assert [local[8 * g] for g in range(3)] == [i["problem_id"] for i in infos]
    assert ranks[0]["local_ids"][8:] == ranks[1]["local_ids"][:4]  # the group the processes split
    # ...TRL gathered exactly the rewards of those votes, and both curricula heard the same groups
    flat = [None if i["masked"] else r for i in infos for r in i["rewards"]]
    assert ranks[0]["rewards"] == ranks[1]["rewards"] == flat
    assert ranks[0]["feed"] == ranks[1]["feed"] and ranks[0]["feed"]["counters"]["observed"] == 3
