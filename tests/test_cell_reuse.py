"""Study cells that reuse evaluations (`run_cell(reuse=True)`: the world's start evaluation computed once per
seed, the per-problem result read from the trainer's final greedy pass) give what cells that evaluate everything
give: real tiny cells of one step on 3 held-out problems per level, and the real evaluation without training; and
that the trainer's mid-run evaluations change no final result (so `eval.every` is free to set to 0)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch

from agents.checkpoint import seed_everything
from agents.evaluation import evaluate_heldout, greedy_per_problem, heldout_set
from agents.evaluation_reuse import reusing_start_evaluations
from agents.experiments.study import quick_budget
from agents.experiments.study_cells import START_EVALUATIONS, Cell, cell_config, run_cell
from agents.experiments.worlds import load_worlds
from agents.policy import build_policy
from agents.run_outputs import EVAL_PROBLEMS_FILE, TIME_COLUMNS, RunOutputs, read_csv, read_eval_problems
from agents.tiny.model import weights_hash

BUDGET = quick_budget(steps=1, n_per_level=3, overrides=["eval.samples=2", "env.levels=[1,2]"])  # seconds, not minutes


def _design():
    return next(w for w in load_worlds() if w.role == "design")


def _without(result, *keys):
    return {k: v for k, v in result.items() if k not in keys}


def _base_policy(config):
    seed_everything(config.seed)
    return build_policy(config.model, config.rollout, seed=config.seed)


@pytest.fixture(scope="module")
def cells(tiny_base_dir, tmp_path_factory):
    """The same cell (cuma_gated, seed 0) run the old way and the new way; the new way's start evaluation was
    stored first as a cell of another arm with that seed stores it (here without training it)."""
    out = tmp_path_factory.mktemp("reuse")
    world = _design()
    config = cell_config(Cell(world, "ttrl", 0), BUDGET, "tiny")
    with reusing_start_evaluations(out / "new" / START_EVALUATIONS):
        stored = evaluate_heldout(_base_policy(config), config, per_problem=True)
    cell = Cell(world, "cuma_gated", 0)
    new = run_cell(cell, out / "new", BUDGET, "tiny")
    old = run_cell(cell, out / "old", BUDGET, "tiny", reuse=False)
    return {"out": out, "stored": stored, "new": new, "old": old,
            "runs": {k: out / k / r["run_dir"] for k, r in (("new", new), ("old", old))}}


def test_the_start_evaluation_is_stored_once_and_reused_with_the_same_numbers(cells):
    assert "reused" not in cells["stored"]
    assert len(list((cells["out"] / "new" / START_EVALUATIONS).glob("*.json"))) == 1
    before = {k: json.loads((run / "summary.json").read_text())["heldout_before"] for k, run in cells["runs"].items()}
    assert before["new"]["reused"] is True and "reused" not in before["old"]
    assert _without(before["new"], "seconds", "reused") == _without(before["old"], "seconds")
    starts = {k: read_eval_problems(run)[0] for k, run in cells["runs"].items()}
    assert starts["new"] == starts["old"] == {"step": 0, **cells["stored"]["problems"]}
    stored = json.loads(json.dumps(cells["stored"]))  # as summary.json holds it (levels as strings)
    assert _without(before["old"], "seconds", "step") == _without(stored, "seconds", "problems")
    # the run that reused its start evaluation trained exactly as the one that computed it
    rows = {k: [_without(r, *TIME_COLUMNS) for r in read_csv(run / "metrics.csv")] for k, run in cells["runs"].items()}
    assert rows["new"] == rows["old"] and len(rows["new"]) == 1
    evals = {k: [_without(r, "seconds") for r in read_csv(run / "eval.csv")] for k, run in cells["runs"].items()}
    assert evals["new"] == evals["old"]


def test_a_cell_reads_the_trainers_final_greedy_pass_and_it_equals_a_fresh_one(cells):
    new, old = cells["new"], cells["old"]
    assert new["from_trainer_eval"] is True and "from_trainer_eval" not in old
    assert new["matches_trainer_eval"] is True and old["matches_trainer_eval"] is True
    for key in ("levels", "collapse", "per_level", "mean", "samples", "spec"):
        assert new[key] == old[key], key
    assert [len(v["ids"]) for v in new["levels"].values()] == [3, 3]
    # a fresh greedy pass over the final model the new cell's run saved
    config = cell_config(Cell(_design(), "cuma_gated", 0), BUDGET, "tiny")
    policy = build_policy(replace(config.model, path=str(cells["runs"]["new"] / "model")), config.rollout, seed=0)
    problems, template = heldout_set(config)
    again = greedy_per_problem(policy, problems, template, batch_size=config.eval.batch_size,
                               max_new_tokens=config.eval.max_new_tokens or config.rollout.max_new_tokens)
    assert again == {"levels": new["levels"], "collapse": new["collapse"]}
    weights = {k: (run / "model" / "model.safetensors").read_bytes() for k, run in cells["runs"].items()}
    assert weights["new"] == weights["old"]  # the same final model: the old cell's fresh pass was over it too


def test_a_run_without_per_problem_results_is_evaluated_again(cells, tmp_path):
    """A run finished before eval_problems.jsonl existed: its cell evaluates the saved model, as it always did."""
    out = tmp_path / "study"
    shutil.copytree(cells["out"] / "new", out)
    run = out / cells["new"]["run_dir"]
    (run / EVAL_PROBLEMS_FILE).unlink()
    (run.parent / "per_problem.json").unlink()
    metrics = (run / "metrics.csv").stat().st_mtime_ns
    result = run_cell(Cell(_design(), "cuma_gated", 0), out, BUDGET, "tiny")
    assert (run / "metrics.csv").stat().st_mtime_ns == metrics           # the finished run was not trained again
    assert "from_trainer_eval" not in result and result["matches_trainer_eval"] is True
    assert result["levels"] == cells["new"]["levels"] and result["collapse"] == cells["new"]["collapse"]


def test_mid_run_evaluations_change_no_final_result(cells, tmp_path):
    """A cell trained with an evaluation after every step (eval_every=1) and one without (eval_every=0, the
    study's `study_budget`): the same final per-problem results, final evaluation, training metrics and weights.
    Both reuse the fixture's stored start evaluation (seed 0, the same problems and settings)."""
    cell = Cell(_design(), "cuma_gated", 0)
    runs, results = {}, {}
    for every in (1, 0):
        out = tmp_path / f"every{every}"
        shutil.copytree(cells["out"] / "new" / START_EVALUATIONS, out / START_EVALUATIONS)
        results[every] = run_cell(cell, out, replace(BUDGET, steps=2, eval_every=every, checkpoint_every=2), "tiny")
        runs[every] = out / results[every]["run_dir"]
    evals = {k: [_without(r, "seconds") for r in read_csv(run / "eval.csv")] for k, run in runs.items()}
    assert sorted({int(r["step"]) for r in evals[1]}) == [0, 1, 2]  # it did evaluate between the steps
    assert sorted({int(r["step"]) for r in evals[0]}) == [0, 2]
    assert [r for r in evals[1] if int(r["step"]) != 1] == evals[0]
    assert [e["step"] for e in read_eval_problems(runs[1])] == [0, 1, 2]
    for key in ("levels", "collapse", "per_level", "mean", "samples"):
        assert results[1][key] == results[0][key], key
    assert results[1]["from_trainer_eval"] is True and results[0]["from_trainer_eval"] is True
    rows = {k: [_without(r, *TIME_COLUMNS) for r in read_csv(run / "metrics.csv")] for k, run in runs.items()}
    assert rows[1] == rows[0] and len(rows[0]) == 2
    weights = {k: (run / "model" / "model.safetensors").read_bytes() for k, run in runs.items()}
    assert weights[1] == weights[0]


def test_a_greedy_only_cell_gives_the_same_results_and_training(cells, tmp_path):
    """`eval.samples=0` (study 2's declared cell setting): the trainer's evaluations skip the sampled pass@1 the
    study never reads; the cell's per-problem results, training metrics and weights are those of the cell that
    sampled, and its eval.csv leaves pass1 and maj empty (read back as NaN: not measured)."""
    from agents.experiments.reproduce import evals_from_run_dir, record_from_eval

    cell = Cell(_design(), "cuma_gated", 0)
    budget = replace(BUDGET, overrides=(*BUDGET.overrides, "eval.samples=0"))
    result = run_cell(cell, tmp_path, budget, "tiny")
    run = tmp_path / result["run_dir"]
    assert result["spec"]["config"]["eval"]["samples"] == 0 and result["from_trainer_eval"] is True
    for key in ("levels", "collapse", "per_level", "mean", "samples"):
        assert result[key] == cells["new"][key], key
    rows = {k: [_without(r, *TIME_COLUMNS) for r in read_csv(r_ / "metrics.csv")]
            for k, r_ in (("greedy", run), ("sampled", cells["runs"]["new"]))}
    assert rows["greedy"] == rows["sampled"]
    assert (run / "model" / "model.safetensors").read_bytes() == \
        (cells["runs"]["new"] / "model" / "model.safetensors").read_bytes()
    evals = read_csv(run / "eval.csv")
    assert evals and all(r["pass1"] == "" and r["maj"] == "" and r["greedy"] != "" for r in evals)
    record = record_from_eval("cuma_gated", 0, evals_from_run_dir(run), wall_s=1.0)
    assert record.pass1_t06 != record.pass1_t06 and record.mean_acc == pytest.approx(result["mean"])  # NaN: unmeasured


def test_only_the_same_evaluation_of_the_same_weights_is_reused(tiny_base_dir, tmp_path):
    budget = quick_budget(steps=1, n_per_level=2, overrides=["eval.samples=2", "eval.max_new_tokens=12",
                                                             "env.levels=[1,2]"])
    config = cell_config(Cell(_design(), "ttrl", 0), budget, "tiny")
    store = tmp_path / "evals"
    with reusing_start_evaluations(store):
        first = _base_policy(config)
        computed = evaluate_heldout(first, config)
        assert "reused" not in computed and "problems" not in computed
        assert "reused" not in evaluate_heldout(first, config)     # a model's later evaluation: never looked up
        reused = evaluate_heldout(_base_policy(config), config)    # another model object, the same weights
        assert reused["reused"] is True and _without(reused, "seconds", "reused") == _without(computed, "seconds")
        other_seed = config.replace({"seed": 1})
        assert "reused" not in evaluate_heldout(_base_policy(other_seed), other_seed)  # seeded samples differ
        changed = _base_policy(config)
        with torch.no_grad():
            next(changed.model.parameters()).view(-1)[0] += 1e-3
        assert weights_hash(changed.model) != weights_hash(first.model)
        assert "reused" not in evaluate_heldout(changed, config)            # e.g. a resumed run's first evaluation
    assert len(list(store.glob("*.json"))) == 3
    assert "reused" not in evaluate_heldout(_base_policy(config), config)  # outside the block: computed


def test_per_problem_lines_after_a_resumed_checkpoint_are_dropped(tmp_path):
    outputs = RunOutputs(tmp_path, tensorboard=False)
    stats = {1: {"n": 1, "greedy": 1.0, "pass1": 1.0, "maj": 1.0, "parse_rate": 1.0}}
    for step in (0, 2, 4):
        problems = {"levels": {"1": {"ids": ["a"], "correct": [1], "answered": [1], "answers": ["7"]}},
                    "collapse": 1.0}
        outputs.log_eval(step, {"levels": stats, "collapse": 1.0, "seconds": 0.1}, problems)
    with open(tmp_path / EVAL_PROBLEMS_FILE, "a") as handle:
        handle.write('{"step": 6, "lev')  # a line cut short by kill -9
    assert [e["step"] for e in read_eval_problems(tmp_path)] == [0, 2, 4]
    RunOutputs(tmp_path, tensorboard=False, resume_step=2)
    assert [e["step"] for e in read_eval_problems(tmp_path)] == [0, 2]
    assert read_eval_problems(tmp_path)[1]["levels"]["1"]["answers"] == ["7"]
    assert read_eval_problems(tmp_path / "elsewhere") == []
