"""The TorchRL face: specs, a real TransformersWrapper rollout, parity with the Gymnasium face, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchrl")
torch.set_num_threads(1)

from tensordict import NonTensorStack, TensorDict, lazy_stack  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402
from torchrl.modules.llm import TransformersWrapper  # noqa: E402

import cuma_env  # noqa: E402
from cuma_env import Completions, CuMaEnv, EpisodeConfig, Problem, make_torchrl_env, score_group  # noqa: E402
from cuma_env.torchrl.env import TORCHRL_KWARGS  # noqa: E402
from cuma_env.torchrl.layout import read_responses  # noqa: E402
from cuma_env.torchrl.token_stats import response_self_certainty, self_certainty_from_logits  # noqa: E402

G = 4


@pytest.fixture
def tiny(tiny_random_model):
    model, tokenizer = tiny_random_model
    return model, tokenizer


def wrapper(model, tokenizer, input_mode="text", **kwargs):
    return TransformersWrapper(model, tokenizer=tokenizer, input_mode=input_mode, generate=True,
                               generate_kwargs={"max_new_tokens": 8, "do_sample": True}, **kwargs)


def scripted(td, completions):
    """What a policy writes in text mode, with fixed completions."""
    prompts = td.get(("text", "prompt")).tolist()
    td.set(("text", "response"), NonTensorStack(*completions))
    td.set(("text", "full"), NonTensorStack(*[p + c for p, c in zip(prompts, completions)]))
    return td


class RecordingStream:
    def __init__(self, problems):
        self.problems, self.drawn, self.observed = list(problems), [], []

    def next_problem(self):
        problem = self.problems[len(self.drawn) % len(self.problems)]
        self.drawn.append(problem)
        return problem

    def observe(self, info):
        self.observed.append(info)


def test_import_does_not_import_torch():
    code = "import sys, cuma_env; assert 'torch' not in sys.modules and 'torchrl' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize("input_mode", ["text", "history"])
def test_arith_env_passes_check_env_specs(tiny, input_mode):
    _, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, input_mode=input_mode, seed=0)
    assert env.batch_size == torch.Size([G]) and env.scoring == "env"
    check_env_specs(env)
    td = env.reset()
    assert len(set(td.get("problem_id").tolist())) == 1 and len(set(td.get("group_id").tolist())) == 1
    assert td.get("query").tolist()[0].startswith("What is ")
    assert env.full_reward_spec["reward"].shape == torch.Size([G, 1, 1])


@pytest.mark.parametrize("input_mode", ["text", "history"])
def test_buffer_scoring_env_passes_check_env_specs_and_declares_no_reward(tiny, input_mode):
    """scoring="buffer": the env only ends the episode; reward, masked and answer are GroupVote's to write."""
    _, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, batch_size=2, tokenizer=tokenizer, input_mode=input_mode,
                           seed=0, reward="self_certainty")
    assert env.scoring == "buffer" and env.episode.scoring == "buffer"
    check_env_specs(env)
    assert env.reward_keys == [] and not {"masked", "answer"} & set(env.full_observation_spec.keys())
    assert "token_stats" not in env.full_action_spec.keys()  # read by GroupVote, not by the env
    td = env.reset()
    assert "masked" not in td.keys() and len(set(td.get("group_id").tolist())) == 1


def test_the_episode_accessor_is_the_envs_state(tiny):
    _, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, batch_size=2, tokenizer=tokenizer, seed=0, min_votes=3)
    episode = env.episode
    assert episode.config is env.config and episode.config.min_votes == 3 and episode.scoring == "buffer"
    assert episode.gym is env.gym_env and episode.source_name == env.gym_env.source.name
    td = env.reset()
    gid = int(td.get("group_id")[0])
    assert list(episode.pending) == [gid] and episode.pending[gid] is env.problem_for(gid)


def test_the_subpackage_has_no_import_cycle():
    """Every import between modules of cuma_env.torchrl, also those inside functions, points one way."""
    import ast
    import graphlib

    package = Path(cuma_env.__file__).parent / "torchrl"
    names = {path.stem for path in package.glob("*.py")} - {"__init__"}
    graph = {}
    for name in names:
        edges = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "cuma_env.torchrl":
                edges |= {alias.name for alias in node.names} & names
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cuma_env.torchrl."):
                edges.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                edges |= {a.name.split(".")[2] for a in node.names if a.name.startswith("cuma_env.torchrl.")}
        graph[name] = edges
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert graph["env"] >= {"group_vote", "layout", "fast_paths", "episode"} and "env" not in graph["group_vote"]
    assert order.index("layout") < order.index("group_vote") < order.index("env")


def test_math_env_from_data_dir(tiny, data_dir):
    _, tokenizer = tiny
    env = make_torchrl_env("CuMa-Math-v0", group_size=G, tokenizer=tokenizer, levels=[1, 2], data_dir=data_dir,
                           seed=1)
    check_env_specs(env)
    td = env.reset()
    assert set(td.get("level").tolist()) <= {1, 2}
    assert "\\boxed{}" in td.get("query").tolist()[0]
    td = env.step(scripted(td, ["\\boxed{5}", "\\boxed{5}", "x", "\\boxed{6}"]))
    assert td["next", "reward"].view(-1).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_transformers_wrapper_step_matches_score_group(tiny):
    model, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, min_votes=1, seed=3)
    policy = wrapper(model, tokenizer)
    td = env.reset()
    problem = env.problem_for(td.get("group_id")[0])
    td = env.step(policy(td))
    completions = td.get(("text", "response")).tolist()
    assert len(completions) == G and read_responses(td) == completions
    expected = score_group(problem, completions, EpisodeConfig(group_size=G, min_votes=1))
    nxt = td["next"]
    assert nxt["reward"].shape == (G, 1, 1) and nxt["masked"].shape == (G, 1)
    assert nxt["reward"].view(-1).tolist() == expected["rewards"]
    assert nxt["masked"].view(-1).tolist() == [expected["masked"]] * G
    assert nxt.get("answer").tolist() == expected["answers"]
    assert nxt["done"].all() and nxt["terminated"].all()
    assert env.last_info == expected


def test_history_mode_rollout_with_wrapper(tiny):
    model, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, input_mode="history", seed=0)
    policy = wrapper(model, tokenizer, input_mode="history", chat_template_name="chatml_format")
    rollout = env.rollout(1, policy)
    assert rollout["next", "reward"].shape == (G, 1, 1, 1)
    info = env.last_info
    assert info is not None and len(info["answers"]) == G


@pytest.mark.parametrize("kwargs", [
    {"reward": "masked_majority", "min_votes": 3},
    {"reward": "majority"},
    {"reward": "ground_truth", "levels": [1]},
    {"reward": "masked_majority", "min_votes": 0.5, "last_number_fallback": False},
    {"reward": "majority", "empty_votes": True},
])
def test_parity_with_gym_face(tiny, kwargs):
    _, tokenizer = tiny
    gym_env = CuMaEnv("CuMa-Arith-v0", group_size=G, **kwargs)
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, **kwargs)
    groups = [["\\boxed{7}", "\\boxed{7}", "\\boxed{7}", "no"], ["so 3", "\\boxed{4}", "4", "\\boxed{5}"],
              ["a", "b", "c", "d"]]
    env.set_seed(11)
    for i, completions in enumerate(groups):
        obs, _ = gym_env.reset(seed=11 if i == 0 else None)
        td = env.reset()
        assert td.get("query").tolist() == [obs] * G  # same draws from the same seed
        _, mean_reward, terminated, _, info = gym_env.step(completions)
        td = env.step(scripted(td, completions))
        assert td["next", "reward"].view(-1).tolist() == info["rewards"]
        assert td["next", "masked"].view(-1).tolist() == [info["masked"]] * G
        assert td["next"].get("answer").tolist() == info["answers"]
        assert env.last_info == info and terminated


def test_problem_stream_called_at_reset_and_step(tiny):
    _, tokenizer = tiny
    problems = [Problem(id=f"p{i}", prompt=f"What is {i} + {i}?", level=1, source="test", answer=str(2 * i))
                for i in range(3)]
    stream = RecordingStream(problems)
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, problem_stream=stream)
    assert env.problem_stream is stream
    for i in range(2):
        td = env.reset()
        assert len(stream.drawn) == i + 1 and len(stream.observed) == i
        assert td.get("problem_id").tolist() == [f"p{i}"] * G
        td = env.step(scripted(td, [f"\\boxed{{{2 * i}}}"] * 3 + ["x"]))
        assert len(stream.observed) == i + 1
        assert stream.observed[-1] == env.last_info
        assert stream.observed[-1]["problem_id"] == f"p{i}" and stream.observed[-1]["majority_correct"]


def test_self_certainty_reward_from_token_stats_input(tiny):
    model, tokenizer = tiny
    env = make_torchrl_env("CuMa-Arith-v0", group_size=G, tokenizer=tokenizer, reward="self_certainty")
    assert "token_stats" in env.full_action_spec.keys()
    check_env_specs(env)
    td = wrapper(model, tokenizer)(env.reset())
    stats = response_self_certainty(model, td, pad_token_id=tokenizer.pad_token_id)
    assert stats.shape == (G,) and torch.isfinite(stats).all() and (stats >= 0).all()
    td.set("token_stats", stats)
    td = env.step(td)
    assert torch.allclose(td["next", "reward"].view(-1), stats)
    gym_env = CuMaEnv("CuMa-Arith-v0", group_size=G, reward="self_certainty")
    gym_env.reset()
    _, _, _, _, info = gym_env.step(Completions(td.get(("text", "response")).tolist(), token_stats=stats.tolist()))
    assert info["rewards"] == td["next", "reward"].view(-1).tolist()


def test_self_certainty_from_logits_matches_definition(tiny):
    logits = torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    out = self_certainty_from_logits(logits, mask)
    for i in range(2):
        rows = logits[i][mask[i]]
        expected = (torch.logsumexp(rows, -1) - rows.mean(-1)).mean()
        assert torch.allclose(out[i], expected)
    uniform = self_certainty_from_logits(torch.zeros(3, 4, 5))  # logsumexp(0) - 0 = log V
    assert torch.allclose(uniform, torch.full((3,), float(torch.log(torch.tensor(5.0)))))
    assert self_certainty_from_logits(logits, torch.zeros(2, 5, dtype=torch.bool)).tolist() == [0.0, 0.0]
    model, _ = tiny
    prompt, response = torch.tensor([5, 6, 7]), torch.tensor([8, 9])
    full_logits = model(input_ids=torch.cat([prompt, response])[None]).logits[0]
    direct = self_certainty_from_logits(full_logits[2:4][None])[0]
    assert torch.allclose(response_self_certainty(model, [prompt], [response])[0], direct, atol=1e-5)
    # a policy output whose responses differ in length is a ragged lazy stack; padding is stripped
    ragged = lazy_stack([TensorDict({"tokens": TensorDict({"prompt": prompt, "response": r})})
                         for r in (response, torch.tensor([8, 9, 10, 0, 0]))])
    from_td = response_self_certainty(model, ragged, pad_token_id=0)
    assert torch.allclose(from_td[0], direct, atol=1e-5)
    assert torch.allclose(from_td[1], response_self_certainty(model, [prompt], [torch.tensor([8, 9, 10])])[0])


def test_bad_kwargs_give_clear_errors(tiny):
    _, tokenizer = tiny
    with pytest.raises(TypeError, match="unknown keyword argument.*group_sizes"):
        make_torchrl_env("CuMa-Arith-v0", group_sizes=4, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="unknown CuMa environment"):
        make_torchrl_env("CuMa-Nope-v0", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="group_size"):
        make_torchrl_env("CuMa-Arith-v0", group_size=0, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="unknown reward"):
        make_torchrl_env("CuMa-Arith-v0", reward="vibes", tokenizer=tokenizer)
    with pytest.raises(NotImplementedError, match="input_mode='tokens'"):
        make_torchrl_env("CuMa-Arith-v0", input_mode="tokens", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="input_mode"):
        make_torchrl_env("CuMa-Arith-v0", input_mode="chat", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="tokenizer"):
        make_torchrl_env("CuMa-Arith-v0")
    with pytest.raises(ValueError, match="scoring='env' needs batch_size == group_size"):
        make_torchrl_env("CuMa-Arith-v0", group_size=4, batch_size=2, scoring="env", tokenizer=tokenizer)
    with pytest.raises(ValueError, match="batch_size"):
        make_torchrl_env("CuMa-Arith-v0", batch_size=0, tokenizer=tokenizer)
    with pytest.raises(cuma_env.DataFileNotFoundError):
        make_torchrl_env("CuMa-Math-v0", data_dir="/nonexistent", tokenizer=tokenizer)
    assert set(TORCHRL_KWARGS) >= {"tokenizer", "input_mode", "batch_size", "seed"}


def test_self_certainty_under_bf16_autocast_projects_in_float32(tiny_base_dir, monkeypatch):
    """On CUDA the policy runs under bf16 autocast; self-certainty's last projection stays float32, which
    brings it closer to the float32 value than bf16 logits do (CPU autocast here; same code path)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import cuma_env.torchrl.token_stats as torch_stats
    from cuma_env.arithmetic import ArithmeticSource
    from cuma_env.prompting import format_prompt

    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_base_dir), AutoTokenizer.from_pretrained(tiny_base_dir)
    source = ArithmeticSource(split="test")
    problems = [source.get(level, i) for level in (1, 2, 3, 4, 5) for i in range(8)]
    prompts = [torch.tensor(tokenizer(format_prompt(p, "compact"))["input_ids"]) for p in problems]
    responses = [torch.tensor(tokenizer(f"\\boxed{{{p.answer}}}")["input_ids"] + [tokenizer.eos_token_id])
                 for p in problems]
    with torch.no_grad():
        exact = response_self_certainty(model, prompts, responses)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = response_self_certainty(model, prompts, responses)
            monkeypatch.setattr(torch_stats, "_logits_in_float32", lambda m, ids, mask: m(
                input_ids=ids, attention_mask=mask).logits)  # bf16 logits, as a plain forward gives them
            plain = response_self_certainty(model, prompts, responses)
    ours_error, plain_error = (ours - exact).abs().max(), (plain - exact).abs().max()
    assert ours.dtype == torch.float32 and ours_error < 0.6 * plain_error and ours_error < 0.02
