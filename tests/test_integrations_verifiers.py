"""The verifiers adapter: groups scored through verifiers' own episode code give our vote and mask.

verifiers >= 0.4 judges a group in `Env.finalize(task, episode)`; `Env.run_episode` is what its eval CLI and
prime-rl call (setup, run, finalize, then `episode.ok`). The tests drive that real method; only the agent that
would call a model is replaced by one that replies with fixed completions.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cuma_env import EpisodeConfig, score_group
from cuma_env.catalog import make_source
from cuma_env.prompting import format_prompt

REPO = Path(__file__).resolve().parents[1]
MISSING = 'verifiers >= 0.4 is not installed (Python >= 3.11): pip install "cuma-gym[verifiers]"'


@pytest.fixture(scope="module")
def vf():
    return pytest.importorskip("verifiers.v1", reason=MISSING)


@pytest.fixture(scope="module")
def adapter(vf):
    from cuma_env.integrations import verifiers as adapter

    return adapter


def scripted_env(adapter, vf, replies_per_episode, **kwargs):
    """A CuMaVoteEnv whose agent seat answers with scripted texts instead of calling a model."""

    class Scripted(adapter.CuMaVoteEnv):
        def _episode_agents(self, ctx, completed, on_trace, on_discard):  # verifiers' seam for the seat's runs
            replies = iter(replies_per_episode.pop(0))

            async def run(task):
                trace = vf.Trace(
                    task=vf.TraceTask(type=type(task).__name__, data=task.data),
                    agent=vf.AgentInfo(config=self.config.agent),
                    nodes=[vf.MessageNode(message=vf.UserMessage(content=task.data.prompt)),
                           vf.MessageNode(parent=0, message=vf.AssistantMessage(content=next(replies)), sampled=True)],
                    ok=True, is_completed=True)
                completed.append(trace)
                return trace

            return SimpleNamespace(agent=SimpleNamespace(run=run))

    base = adapter.load_environment(**kwargs)
    env = Scripted(base.config)
    if base.taskset.stream is not None:
        env.taskset.use_stream(base.taskset.stream)
    return env


def play(env, task):
    return asyncio.run(env.run_episode(task, ctx=None))


def test_taskset_serves_the_catalog_problems_with_their_prompt_template(adapter):
    env = adapter.load_environment("CuMa-Arith-v0", split="test", levels=[2, 4], group_size=4)
    tasks = list(env.taskset.take(3))
    source = make_source("CuMa-Arith-v0", "test", levels=[2, 4])
    expected = [source.get(2, i) for i in range(3)]
    assert [t.data.problem_id for t in tasks] == [p.id for p in expected]
    assert [t.data.prompt for t in tasks] == [format_prompt(p, "compact") for p in expected]
    assert [t.data.idx for t in tasks] == [0, 1, 2] and {t.data.level for t in tasks} == {2}
    assert env.taskset.bounded and sum(1 for _ in env.taskset) == source.size(2) + source.size(4)
    shuffled = [t.data.problem_id for t in env.taskset.shuffle(seed=1).take(5)]
    assert shuffled == [t.data.problem_id for t in env.taskset.shuffle(seed=1).take(5)]


def test_run_episode_plays_the_seat_g_times_and_votes_like_score_group(adapter, vf):
    groups = [["so \\boxed{7}", "\\boxed{7}", "it is 8", "\\boxed{7.0}"],   # majority 7, one dissenter
              ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "no answer here"],  # no answer twice: masked
              ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{2}"]]
    env = scripted_env(adapter, vf, [list(g) for g in groups], group_size=4, min_votes=2, levels=[3],
                       last_number_fallback=False)
    for task, completions in zip(env.taskset, groups):
        episode = play(env, task)
        assert episode.ok and not episode.errors and len(episode.traces) == 4
        info = score_group(task.problem(), completions, EpisodeConfig(group_size=4, min_votes=2,
                                                                      last_number_fallback=False))
        rewards = [t.rewards["masked_majority"].score for t in episode.traces]
        assert rewards == ([0.0] * 4 if info["masked"] else info["rewards"])
        assert [t.reward for t in episode.traces] == rewards
        assert {t.metrics["masked"] for t in episode.traces} == {float(info["masked"])}
        assert [t.info["cuma"]["answer"] for t in episode.traces] == info["answers"]
    assert rewards == [1.0, 1.0, 1.0, 0.0]  # 1/2, 0.5 and 1/2 are one cluster


def test_masked_group_gives_every_member_zero_and_the_mask_as_a_metric(adapter, vf):
    env = scripted_env(adapter, vf, [["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{4}"]], group_size=4)
    episode = play(env, next(iter(env.taskset)))
    assert [t.reward for t in episode.traces] == [0.0] * 4
    assert all(t.metrics["masked"] == 1.0 and t.metrics["agreement"] == 0.25 for t in episode.traces)
    assert {t.info["cuma"]["majority_count"] for t in episode.traces} == {1}  # below min_votes=2


def test_label_free_reward_never_reads_the_answer_but_diagnostics_do(adapter, vf):
    replies = ["\\boxed{5}", "\\boxed{5}", "\\boxed{6}", "\\boxed{5}"]
    env = scripted_env(adapter, vf, [list(replies), list(replies)], group_size=4)
    task = next(iter(env.taskset))
    wrong = task.with_data(answer="123456")
    true_run, wrong_run = play(env, task), play(env, wrong)
    assert [t.reward for t in true_run.traces] == [t.reward for t in wrong_run.traces] == [1.0, 1.0, 0.0, 1.0]
    assert {t.metrics["correct"] for t in wrong_run.traces} == {0.0}
    truth = env.taskset.task(task.problem())  # the ground_truth reward, by contrast, follows the answer
    labelled = scripted_env(adapter, vf, [[f"\\boxed{{{task.data.answer}}}", "\\boxed{5}", "x", "\\boxed{5}"]],
                            group_size=4, reward="ground_truth")
    assert [t.reward for t in play(labelled, truth).traces] == [1.0, 0.0, 0.0, 0.0]


def test_an_incomplete_group_fails_the_episode_instead_of_voting(adapter, vf):
    env = scripted_env(adapter, vf, [["\\boxed{1}", "\\boxed{1}"]], group_size=2)
    task = next(iter(env.taskset))
    episode = vf.Episode(task=vf.TraceTask(type="CuMaTask", data=task.data))
    with pytest.raises(ValueError, match="needs the group's 2 traces, got 0"):
        asyncio.run(env.finalize(task, episode))


def test_plugin_id_loads_through_verifiers_own_loader(adapter, vf):
    config = vf.resolve_env_config({"taskset": {"id": adapter.PLUGIN_ID, "env_id": "CuMa-Arith-v0", "levels": [1]},
                                    "group_size": 4, "min_votes": 0.75})
    env = vf.load_environment(config)
    assert type(env) is adapter.CuMaVoteEnv and type(env.taskset) is adapter.CuMaTaskset
    assert env.episode_config == EpisodeConfig(group_size=4, min_votes=0.75)
    assert next(iter(env.taskset)).data.level == 1
    with pytest.raises(ValueError, match="unknown CuMa environment"):
        adapter.load_environment("CuMa-Nope-v0")


def test_a_curriculum_chooses_the_problems_and_hears_every_group(adapter, vf):
    from cuma_env import ArithmeticSource
    from curricula import CurriculumStream

    stream = CurriculumStream("agreement_gated", ArithmeticSource(seed=0), seed=0)
    twin = CurriculumStream("agreement_gated", ArithmeticSource(seed=0), seed=0)
    env = scripted_env(adapter, vf, [["\\boxed{3}"] * 4 for _ in range(3)], group_size=4, problem_stream=stream)
    assert not env.taskset.bounded
    tasks = list(env.taskset.take(3))
    assert [t.data.problem_id for t in tasks] == [twin.next_problem().id for _ in range(3)]
    for task in tasks:
        play(env, task)
    assert stream.observed == 3


def test_missing_verifiers_is_one_import_error_naming_the_extra():
    code = ("import sys; sys.modules['verifiers'] = None; sys.modules['verifiers.v1'] = None\n"
            "import cuma_env.integrations\n"
            "try:\n    import cuma_env.integrations.verifiers\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "cuma-gym[verifiers]"' in out.stdout


def test_the_docs_verifiers_example_runs_as_written(vf, capsys):
    text = (REPO / "docs" / "trainers.md").read_text()
    section = text[text.index("## verifiers"):text.index("## OpenRLHF")]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/trainers.md#verifiers", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == "[1.0, 1.0, 1.0, 0.0] 0.0" and printed[0].endswith("Answer in \\boxed{}.")
