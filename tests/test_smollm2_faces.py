"""Every face with a real LLM, SmolLM2-135M-Instruct (`model.path: smollm2-135m`, agents.packaged_models).

The tiny base's tests show the faces work; these show they hold with a real 49k BPE vocabulary, a ChatML template
and free-form chain of thought. Generation is slow on a CPU (~20-50 tokens/s), so the tests that sample are `slow`
and draw a few short completions. TRL, `cuma curate` and `cuma calibrate` cost minutes: docs/smollm2.md records
them, run by hand.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchrl")

from cuma_env import EpisodeConfig, make_torchrl_env, score_group  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
G = 4


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    """(model, tokenizer) through the agent's loader, by name as `model.path` gives it."""
    from agents.policy import load_model

    return load_model("smollm2-135m", torch.device("cpu"))


@pytest.mark.parametrize("input_mode", ["text", "history"])
def test_torchrl_env_with_the_smollm2_tokenizer_passes_check_env_specs(smollm2_dir, input_mode):
    from torchrl.envs.utils import check_env_specs

    from agents.policy import load_tokenizer

    tokenizer = load_tokenizer(str(smollm2_dir))  # the tokenizer alone: no weights are loaded
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, input_mode=input_mode, seed=0)
    check_env_specs(env)
    td = env.reset()
    assert td.get("query").tolist()[0].startswith("What is ") and len(set(td.get("problem_id").tolist())) == 1
    if input_mode == "text":  # ChatML around the problem, ending where the assistant's turn begins
        prompt = td.get(("text", "prompt")).tolist()[0]
        assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert "<|im_start|>user\nWhat is " in prompt


@pytest.mark.slow
def test_verifiers_scores_a_group_of_smollm2_completions(smollm2):
    """verifiers' own episode code plays the agent seat G times with the model's replies; the adapter's rewards
    are the Gymnasium face's vote on the same texts."""
    vf = pytest.importorskip("verifiers.v1")
    from agents.generation import generate_texts
    from cuma_env.integrations import verifiers as adapter

    model, tokenizer = smollm2
    replies: list[str] = []

    class SmolLM2Seat(adapter.CuMaVoteEnv):
        def _episode_agents(self, ctx, completed, on_trace, on_discard):  # verifiers' seam for the seat's runs
            async def run(task):
                prompt = tokenizer.apply_chat_template([{"role": "user", "content": task.data.prompt}],
                                                       tokenize=False, add_generation_prompt=True)
                reply = generate_texts(model, tokenizer, [prompt], samples=1, temperature=0.7, max_new_tokens=24,
                                       add_special_tokens=False, seed=len(replies))[0][0]
                replies.append(reply)
                trace = vf.Trace(
                    task=vf.TraceTask(type=type(task).__name__, data=task.data),
                    agent=vf.AgentInfo(config=self.config.agent),
                    nodes=[vf.MessageNode(message=vf.UserMessage(content=task.data.prompt)),
                           vf.MessageNode(parent=0, message=vf.AssistantMessage(content=reply), sampled=True)],
                    ok=True, is_completed=True)
                completed.append(trace)
                return trace

            return SimpleNamespace(agent=SimpleNamespace(run=run))

    env = SmolLM2Seat(adapter.load_environment("CuMa-Arith-v0", group_size=G, min_votes=2, levels=[1]).config)
    task = next(iter(env.taskset))
    episode = asyncio.run(env.run_episode(task, ctx=None))
    assert episode.ok and not episode.errors and len(episode.traces) == G and len(replies) == G
    assert all(isinstance(r, str) and r for r in replies)
    info = score_group(task.problem(), [t.last_reply for t in episode.traces], EpisodeConfig(group_size=G,
                                                                                             min_votes=2))
    rewards = [t.rewards["masked_majority"].score for t in episode.traces]
    assert rewards == ([0.0] * G if info["masked"] else info["rewards"])
    assert {t.metrics["masked"] for t in episode.traces} == {float(info["masked"])}
    assert [t.info["cuma"]["answer"] for t in episode.traces] == info["answers"]


@pytest.mark.slow
def test_reinforce_example_plays_the_gym_env_with_smollm2(smollm2_dir, capsys):
    spec = importlib.util.spec_from_file_location("other_algorithm", REPO / "examples" / "other_algorithm.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    history = example.main(["--model", "smollm2-135m", "--steps", "1", "--group-size", str(G),
                            "--max-new-tokens", "8"])
    assert len(history["reward"]) == 1 and 0.0 <= history["reward"][0] <= 1.0 and history["updates"] in (0, 1)
    assert "1 episodes" in capsys.readouterr().out


def test_curate_takes_a_model_path_name_as_its_hf_generator(smollm2_dir):
    from agents.commands.curate import resolve_hf_spec

    assert resolve_hf_spec("hf:smollm2-135m#device=cpu") == f"hf:{smollm2_dir}#device=cpu"
    for spec in ("hf:Qwen/Qwen2.5-7B-Instruct", "openai:http://127.0.0.1:8000/v1#smollm2-135m", "replay:smollm2-135m"):
        assert resolve_hf_spec(spec) == spec


@pytest.mark.slow
def test_curate_runs_one_call_with_smollm2_as_the_generator(smollm2_dir, data_dir, tmp_path, capsys):
    from agents.commands.curate import main as curate_main

    out = tmp_path / "curated.jsonl"
    args = ["--generator", "hf:smollm2-135m#device=cpu", "--out", str(out), "--levels", "1", "--topics", "prealgebra",
            "--calls", "1", "--per-call", "1", "--k-examples", "1", "--max-tokens", "16", "--data-dir", str(data_dir),
            "--save-rejects", "--no-progress"]
    assert curate_main(args) == 0
    assert "calls 1/1" in capsys.readouterr().out  # what it kept is the model's business: usually nothing
