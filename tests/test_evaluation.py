"""Held-out evaluation and `cuma eval`: benches (rows of the task catalog), grading, determinism, collapse, the
command's outputs."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
import torch

from agents.commands import eval as eval_command
from agents.config import ModelConfig, RolloutConfig
from agents.evaluation import (
    bench_names,
    bench_problems,
    evaluate,
    format_table,
    heldout_bench,
    is_correct,
    mean_over_levels,
    resolve_model,
    write_results,
)
from agents.policy import build_policy
from cuma_env.arithmetic import ArithmeticSource


def test_arith_bench_is_the_held_out_test_split_per_level():
    problems, template = bench_problems("arith", n_per_level=30)
    assert template == "compact" and list(problems) == [1, 2, 3, 4, 5]
    train_ids = {ArithmeticSource("train").get(1, i).id for i in range(ArithmeticSource("train").size(1))}
    for level, items in problems.items():
        assert 0 < len(items) <= 30 and all(p.level == level and p.meta["split"] == "test" for p in items)
    assert not train_ids & {p.id for p in problems[1]}
    assert heldout_bench("CuMa-Arith-v0") == "arith" and heldout_bench("CuMa-Math-v0") == "math500"


def test_file_benches_by_level(data_dir):
    math500, template = bench_problems("math500", data_dir=data_dir)
    assert template == "default" and {k: len(v) for k, v in math500.items()} == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    assert {k: len(v) for k, v in bench_problems("aime24", data_dir=data_dir)[0].items()} == {"all": 30}
    assert {k: len(v) for k, v in bench_problems("amc23", data_dir=data_dir)[0].items()} == {"all": 40}
    assert len(bench_problems("gsm8k", 5, data_dir=data_dir)[0]["all"]) == 5
    assert list(bench_problems("math500", 3, levels=[2], data_dir=data_dir)[0]) == [2]
    assert set(bench_names()) == {"arith", "math500", "gsm8k", "aime24", "amc23"}
    with pytest.raises(ValueError, match="unknown bench"):
        bench_problems("mmlu")


def test_grading():
    assert is_correct("41", "41") and is_correct(" 41", "41") and is_correct("041", "41")
    assert not is_correct("40", "41") and not is_correct(None, "41") and not is_correct("41", None)
    assert is_correct(r"\frac{1}{2}", "0.5")


class ConstantPolicy:
    """Answers every prompt with the same box: the collapsed model of the paper."""

    def __init__(self, answer: str):
        self.answer = answer
        self.model = torch.nn.Linear(1, 1)
        self.tokenizer = SimpleNamespace(apply_chat_template=None)
        self.device = torch.device("cpu")

    def generate_texts(self, prompts, *, samples=1, **kwargs):
        return [[f"\\boxed{{{self.answer}}}"] * samples for _ in prompts]


def test_a_collapsed_model_shows_collapse_one(monkeypatch):
    monkeypatch.setattr("agents.policy.render_prompts", lambda tokenizer, texts: list(texts))
    problems, template = bench_problems("arith", n_per_level=20, levels=[1])
    result = evaluate(ConstantPolicy("9"), problems, template, samples=3)
    assert result["collapse"] == 1.0
    nines = sum(p.answer == "9" for p in problems[1]) / len(problems[1])
    assert result["levels"][1]["greedy"] == result["levels"][1]["pass1"] == result["levels"][1]["maj"] == nines
    assert f"| 1 | {len(problems[1])} |" in format_table(result)


@pytest.fixture(scope="module")
def policy(tiny_base_dir):
    return build_policy(ModelConfig(path=str(tiny_base_dir)), RolloutConfig())


def test_evaluate_the_tiny_base_is_deterministic_and_leaves_the_rng_alone(policy):
    problems, template = bench_problems("arith", n_per_level=12)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = evaluate(policy, problems, template, samples=3, max_new_tokens=8)
    assert torch.equal(torch.get_rng_state(), state)
    second = evaluate(policy, problems, template, samples=3, max_new_tokens=8)
    assert first["levels"] == second["levels"] and first["collapse"] == second["collapse"]
    for stats in first["levels"].values():
        assert all(0.0 <= stats[k] <= 1.0 for k in ("greedy", "pass1", "maj", "parse_rate"))
    assert first["levels"][1]["parse_rate"] > 0.5  # the base answers in \\boxed{}


def test_a_greedy_only_evaluation_gives_the_same_greedy_results_and_leaves_the_sampled_ones_empty(policy, tmp_path):
    """`samples=0` (`eval.samples: 0`, study 2's cells): the greedy pass problem by problem is unchanged, the
    sampled statistics are None, and the table and the CSV say "not measured" rather than 0."""
    problems, template = bench_problems("arith", n_per_level=6, levels=[1, 2])
    full = evaluate(policy, problems, template, samples=3, max_new_tokens=8, per_problem=True)
    greedy = evaluate(policy, problems, template, samples=0, max_new_tokens=8, per_problem=True)
    assert greedy["problems"] == full["problems"] and greedy["collapse"] == full["collapse"]
    for level, stats in greedy["levels"].items():
        assert stats["greedy"] == full["levels"][level]["greedy"] and stats["n"] == 6
        assert stats["pass1"] is None and stats["maj"] is None and stats["parse_rate"] is None
    assert mean_over_levels(greedy) == mean_over_levels(full) and mean_over_levels(greedy, "pass1") is None
    table = format_table(greedy)
    assert "| — | — |" in table and "nan" not in table and "None" not in table
    _, csv_path = write_results(greedy, tmp_path, model="tiny", bench="arith", max_new_tokens=8)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["pass1"] for r in rows] == ["", ""] and float(rows[0]["greedy"]) == greedy["levels"][1]["greedy"]


def test_eval_command_writes_results(tiny_base_dir, tmp_path, capsys):
    rc = eval_command.main(["--model", str(tiny_base_dir), "--bench", "arith", "--n", "6", "--samples", "2",
                            "--levels", "1,2", "--out", str(tmp_path)])
    assert rc == 0
    payload = json.loads((tmp_path / "eval-arith.json").read_text())
    assert payload["bench"] == "arith" and set(payload["levels"]) == {"1", "2"}
    assert (tmp_path / "eval-arith.csv").read_text().splitlines()[0] == "level,n,greedy,pass1,maj,parse_rate"
    assert "pass@1 greedy" in capsys.readouterr().out


def test_eval_arith_defaults_to_400_problems_per_level_not_the_whole_split(tiny_base_dir, tmp_path):
    """Level 5 of the arith test split has ~146k problems: without --n, arith takes 400 per level (levels
    with fewer take all), as `cuma reproduce` does; --n still overrides it."""
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "arith", "--samples", "1",
                              "--levels", "2,3", "--out", str(tmp_path)]) == 0
    levels = json.loads((tmp_path / "eval-arith.json").read_text())["levels"]
    assert {k: v["n"] for k, v in levels.items()} == {"2": 187, "3": 400}
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "arith", "--samples", "1", "--n", "3",
                              "--levels", "3", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "eval-arith.json").read_text())["levels"]["3"]["n"] == 3


def test_eval_reads_the_validation_split_when_asked_and_refuses_train(tiny_base_dir, tmp_path, capsys):
    """`--split validation` evaluates arith's validation problems (the split tuning reads), never test's."""
    problems, _ = bench_problems("arith", 5, levels=[2, 4], split="validation")
    validation = ArithmeticSource("validation")
    assert [p.id for p in problems[4]] == [validation.get(4, i).id for i in range(5)]
    assert all(p.meta["split"] == "validation" for level in problems.values() for p in level)
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "arith", "--split", "validation",
                              "--samples", "1", "--levels", "1,2", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "eval-arith.json").read_text())
    assert payload["split"] == "validation" and {k: v["n"] for k, v in payload["levels"].items()} == {"1": 11, "2": 80}
    for bench, split in (("arith", "train"), ("math500", "validation")):
        with pytest.raises(ValueError, match=f"bench {bench} evaluates .*not '{split}'"):
            bench_problems(bench, 3, split=split)
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "arith", "--split", "train",
                              "--out", str(tmp_path)]) == 2
    assert "not 'train'" in capsys.readouterr().err


def test_eval_command_reads_a_run_directory(tiny_base_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from agents.checkpoint import save_checkpoint
    from agents.config import load_config, save_config

    run = tmp_path / "run"
    run.mkdir()
    save_config(load_config(overrides=[f"model.path={tiny_base_dir}"]), run / "config.yaml")
    state = AutoModelForCausalLM.from_pretrained(tiny_base_dir).state_dict()
    save_checkpoint(run, 3, {"model": state})
    path, loaded = resolve_model(str(run))
    assert path == str(tiny_base_dir) and set(loaded) == set(state)
    assert eval_command.main(["--model", str(run), "--bench", "arith", "--n", "2", "--samples", "1",
                              "--levels", "1", "--out", str(tmp_path / "e")]) == 0
    assert eval_command.main(["--model", str(run), "--bench", "math500", "--data-dir", str(tmp_path / "none"),
                              "--out", str(tmp_path)]) == 2


def test_eval_says_when_prompts_do_not_fit_the_model(tiny_base_dir, tmp_path, capsys, data_dir):
    """GSM8K prompts are longer than the tiny base's 128 positions: the command still evaluates, and says so
    in one line; arith prompts fit, so no note there."""
    args = ["--model", str(tiny_base_dir), "--samples", "1", "--max-new-tokens", "4", "--out", str(tmp_path),
            "--data-dir", str(data_dir)]
    assert eval_command.main(["--bench", "gsm8k", "--n", "3", *args]) == 0
    err = capsys.readouterr().err
    assert "cuma eval: note: 3 of 3 prompts plus --max-new-tokens 4 exceed the model's 128 positions" in err
    assert json.loads((tmp_path / "eval-gsm8k.json").read_text())["levels"]["all"]["n"] == 3
    assert eval_command.main(["--bench", "arith", "--n", "2", "--levels", "5", *args]) == 0
    assert "note:" not in capsys.readouterr().err


# --- a new bench is one row of the task catalog ------------------------------------------------------------
def test_a_new_catalog_row_is_a_bench_of_evaluate_and_cuma_eval(monkeypatch, policy, tiny_base_dir, tmp_path):
    """A task registered with a `bench` name (here: the procedural family under the default template) is
    evaluated by `bench_problems` + `evaluate` and by `cuma eval --bench`, with nothing added elsewhere."""
    from cuma_env import catalog

    row = catalog.Task("CuMa-ArithLong-v0", "arithmetic with the long template", {"test": None}, bench="arith-long")
    monkeypatch.setitem(catalog.TASKS, row.env_id, row)
    assert "arith-long" in bench_names() and heldout_bench("CuMa-ArithLong-v0") == "arith-long"
    problems, template = bench_problems("arith-long", 3, levels=[2, 1])
    assert template == "default" and list(problems) == [2, 1]
    assert [p.id for p in problems[1]] == [ArithmeticSource("test").get(1, i).id for i in range(3)]
    result = evaluate(policy, problems, template, samples=2, max_new_tokens=8)
    assert {k: v["n"] for k, v in result["levels"].items()} == {2: 3, 1: 3}
    assert eval_command.main(["--model", str(tiny_base_dir), "--bench", "arith-long", "--n", "2", "--samples", "1",
                              "--levels", "1", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "eval-arith-long.json").read_text())["levels"]["1"]["n"] == 2


def test_a_new_catalog_row_over_a_jsonl_file_is_one_unlevelled_bench(monkeypatch, policy, tmp_path):
    """A file-backed task: its dataset (a `cuma_env.tasks.Dataset`) gives the bench's problems, in file
    order, as one row `all` when the task has no levels; the policy is graded on them."""
    from cuma_env import catalog
    from cuma_env.tasks import Dataset
    from cuma_env.tasks.competition import competition_reader

    (tmp_path / "toy").mkdir()
    lines = [{"id": i, "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(5)]
    (tmp_path / "toy" / "test.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    toy = Dataset("toy", "toy/test.jsonl", competition_reader("toy"))  # the layout: id, problem, answer
    row = catalog.Task("CuMa-Toy-v0", "five additions", {"test": toy}, template="compact", levelled=False,
                       bench="toy")
    monkeypatch.setitem(catalog.TASKS, row.env_id, row)
    problems, template = bench_problems("toy", 4, data_dir=tmp_path)
    assert template == "compact" and list(problems) == ["all"]
    assert [p.answer for p in problems["all"]] == ["0", "2", "4", "6"]
    with pytest.raises(ValueError, match="no difficulty levels"):
        bench_problems("toy", levels=[1], data_dir=tmp_path)
    result = evaluate(policy, problems, template, samples=2, max_new_tokens=8)
    assert result["levels"]["all"]["n"] == 4 and 0.0 <= result["levels"]["all"]["greedy"] <= 1.0
