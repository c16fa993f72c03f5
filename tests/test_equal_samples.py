"""Equal compute: `train.max_samples` (a budget of generated completions, probes included) and `cuma study
--budget equal_samples` (every trained arm stops at what the equal-steps arms without probes generate)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace

import pytest

from agents.checkpoint import list_checkpoints, load_checkpoint
from agents.config import ConfigError, load_config
from agents.run_outputs import METRIC_COLUMNS, TIME_COLUMNS, read_csv
from agents.trainer import Trainer

P, G, PROBE_SIZE, STEPS = 2, 4, 2, 3
ONE_STEP = P * G


def overrides(base_dir, *extra: str) -> list[str]:
    """The gated preset at tiny sizes, its gate opened so that it probes the next level after every group."""
    return [f"model.path={base_dir}", f"train.steps={STEPS}", f"rollout.prompts_per_step={P}",
            f"rollout.group_size={G}", "rollout.max_new_tokens=16", "eval.every=0", "eval.n_per_level=1",
            "eval.samples=1", "output.progress=false", "output.tensorboard=false", "output.checkpoint_every=1",
            "output.keep_checkpoints=10", "env.min_votes=0.5", "curriculum.options.window=1",
            "curriculum.options.min_steps=1", "curriculum.options.probe_interval=1",
            "curriculum.options.agreement_threshold=0.0", "curriculum.options.max_mask_rate=1.0",
            f"curriculum.options.probe_size={PROBE_SIZE}", *extra]


def train(run_dir, base_dir, *extra: str) -> dict:
    return Trainer.new(load_config(preset="tiny-cuma-gated", overrides=overrides(base_dir, *extra)), run_dir).run()


def counts(run_dir) -> dict[int, dict]:
    """Per checkpointed step: the trainer's count, and the curriculum stream's own probe counter."""
    out = {}
    for step, path in list_checkpoints(run_dir):
        state = load_checkpoint(path)
        out[step] = {**state["trainer"]["samples"], "probes": state["stream"]["post"]["probes"]}
    return out


def weights(path) -> str:
    state = load_checkpoint(path)["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest()


def comparable(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_csv(run_dir / "metrics.csv")]


@pytest.fixture(scope="module")
def runs(tiny_base_dir, tmp_path_factory):
    """`free`: no budget, every step; `capped`: a budget that the probes make bind after step 2."""
    root = tmp_path_factory.mktemp("equal-samples")
    free = train(root / "free", tiny_base_dir)
    free_counts = counts(root / "free")
    budget = free_counts[2]["train"] + free_counts[2]["probe"] + ONE_STEP - 1  # step 3 no longer fits
    capped = train(root / "capped", tiny_base_dir, f"train.max_samples={budget}")
    return root, free, free_counts, capped, budget


def test_the_count_is_every_training_and_probe_completion_and_no_budget_runs_every_step(runs):
    root, free, free_counts, _, _ = runs
    assert free["steps"] == STEPS and free["stopped"] == "steps" and free["max_samples"] is None
    for step, c in free_counts.items():  # exact: P x G per step, probe_size x G per probe the stream ran
        assert c["train"] == step * ONE_STEP and c["probe"] == c["probes"] * PROBE_SIZE * G
    assert free_counts[1]["probes"] >= 1  # the opened gate probes from the first step on
    assert free["samples"] == {"train": STEPS * ONE_STEP, "probe": free_counts[STEPS]["probe"],
                               "total": STEPS * ONE_STEP + free_counts[STEPS]["probe"]}


def test_max_samples_stops_before_the_step_that_would_pass_it_counting_probes(runs, capsys):
    root, free, free_counts, capped, budget = runs
    assert capped["steps"] == 2 < STEPS and capped["stopped"] == "max_samples" and capped["max_samples"] == budget
    assert 3 * ONE_STEP <= budget  # training completions alone would have bought step 3: the probes stopped it
    assert capped["samples"]["total"] == free_counts[2]["train"] + free_counts[2]["probe"]
    # cleanly: evaluated at the stop, checkpointed, the final model saved, the reason in the summary
    evals = read_csv(root / "capped" / "eval.csv")
    assert sorted({int(r["step"]) for r in evals}) == [0, 2] and list_checkpoints(root / "capped")[-1][0] == 2
    assert (root / "capped" / "model").is_dir() and (root / "capped" / "report.png").is_file()
    # until it stops, the budgeted run is the free run, bit for bit
    assert comparable(root / "capped") == comparable(root / "free")[:2]
    assert weights(list_checkpoints(root / "capped")[-1][1]) == weights(dict(list_checkpoints(root / "free"))[2])


def test_a_resumed_run_keeps_its_count(runs, tiny_base_dir):
    root, _, _, capped, _ = runs
    resumed = root / "resumed"
    shutil.copytree(root / "capped", resumed, ignore=shutil.ignore_patterns("model", "summary.json"))
    for step, path in list_checkpoints(resumed):
        if step > 1:
            path.unlink()
    summary = Trainer.resume(resumed).run()
    assert summary["steps"] == 2 and summary["stopped"] == "max_samples"
    assert summary["samples"] == capped["samples"] and counts(resumed)[2] == counts(root / "capped")[2]
    assert comparable(resumed) == comparable(root / "capped")


@pytest.mark.skipif("samples_total" not in METRIC_COLUMNS,
                    reason="agents.run_outputs.METRIC_COLUMNS has no samples_total column yet")
def test_metrics_csv_records_the_running_count(runs):
    root, _, free_counts, _, _ = runs
    rows = read_csv(root / "free" / "metrics.csv")
    assert [int(r["samples_total"]) for r in rows] == [free_counts[s]["train"] + free_counts[s]["probe"]
                                                       for s in range(1, STEPS + 1)]


@pytest.mark.parametrize("value", ["0", "-5", "2.5", "true", "many"])
def test_a_bad_budget_is_one_line(value):
    with pytest.raises(ConfigError, match="train.max_samples") as info:
        load_config(preset="tiny-cuma-gated", overrides=[f"train.max_samples={value}"])
    assert "\n" not in str(info.value)


def test_a_budget_below_one_step_is_refused_before_anything_loads(tmp_path):
    config = load_config(preset="tiny-cuma-gated", overrides=["train.max_samples=127"])  # one step: 16 x 8
    trainer = Trainer.new(config, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"train.max_samples=127 is below one step's 128 completions"):
        trainer.build()
    trainer.discard()
    assert not (tmp_path / "run").exists()


# --- the study side --------------------------------------------------------------------------------
def test_under_equal_samples_only_the_probing_arms_cells_change():
    from agents.experiments.study import StudyPlan, study_budget
    from agents.experiments.study_arms import ARM_ORDER
    from agents.experiments.study_cells import (
        Cell,
        cell_config,
        cell_directory,
        cell_spec,
        equal_samples,
        generated_per_step,
        never_probes,
    )
    from agents.experiments.worlds import load_worlds

    world = next(w for w in load_worlds() if w.role == "design")
    steps, samples = study_budget(), replace(study_budget(), kind="equal_samples")
    budget = equal_samples(world, samples, "tiny")
    assert budget == steps.steps * 16 * 8  # what an equal-steps arm without probes generates
    probing = []
    for arm in ARM_ORDER:
        cell = Cell(world, arm, 1)
        before, after = (cell_spec(cell, b, "tiny", "test") for b in (steps, samples))
        config = cell_config(cell, samples, "tiny")
        if not cell.arm_spec.trains or (never_probes(config) and generated_per_step(config) * steps.steps == budget):
            assert after == before and config.train.max_samples is None  # its finished cell is reused
            assert cell_directory(cell, "out", after) == cell.directory("out")
        else:
            probing.append(arm)
            assert after == {**before, "budget": "equal_samples",
                             "config": {**before["config"], "train": {**before["config"]["train"],
                                                                      "max_samples": budget}}}
            assert config.train.steps == steps.steps  # the same cap, so the same warm-up and lr horizon
            assert cell_directory(cell, "out", after).name == f"{arm}-s1-equal_samples"
    assert set(probing) == {"cuma_gated", "cuma_gated_vote", "gated_2vote", "ttrl_vote_n"}  # probes, or votes on 32
    plan = StudyPlan((world,), ("base", "ttrl", "cuma_gated"), samples).to_dict()
    assert plan["budget"]["kind"] == "equal_samples" and plan["max_samples"] == {"design": budget}
    assert "max_samples" not in StudyPlan((world,), ("base",), steps).to_dict()


def test_an_equal_steps_cell_is_finished_for_equal_samples_and_a_probing_one_runs_beside_it(tmp_path):
    from agents.experiments.study import study_budget
    from agents.experiments.study_cells import RESULT_FILE, Cell, cell_directory, cell_spec, finished
    from agents.experiments.worlds import load_worlds

    world = next(w for w in load_worlds() if w.role == "design")
    steps, samples = study_budget(), replace(study_budget(), kind="equal_samples")
    for arm in ("ttrl", "cuma_gated"):  # both finished under equal steps
        cell = Cell(world, arm, 0)
        spec = cell_spec(cell, steps, "tiny", "test")
        cell.directory(tmp_path).mkdir(parents=True)
        (cell.directory(tmp_path) / RESULT_FILE).write_text(json.dumps({"spec": spec, "mean": 0.5}))
    ttrl, gated = Cell(world, "ttrl", 0), Cell(world, "cuma_gated", 0)
    assert finished(ttrl, tmp_path, cell_spec(ttrl, samples, "tiny", "test"))["mean"] == 0.5
    spec = cell_spec(gated, samples, "tiny", "test")
    assert finished(gated, tmp_path, spec) is None  # not a conflict: it lives in its own directory
    assert cell_directory(gated, tmp_path, spec) == tmp_path / "cells" / "design" / "cuma_gated-s0-equal_samples"


def test_the_budget_kind_is_checked_and_reproduce_stays_at_equal_steps(tmp_path, capsys):
    from agents.commands.study import main
    from agents.experiments.reproduce import Budget, reproduce

    with pytest.raises(ValueError, match="budget must be one of equal_steps, equal_samples, got 'equal_time'"):
        Budget(kind="equal_time")
    with pytest.raises(ValueError, match="cuma study --budget equal_samples"):
        reproduce(tmp_path / "r", budget=Budget(kind="equal_samples"))
    assert not (tmp_path / "r").exists()
    assert main(["--dry-run", "--budget", "equal_samples", "--arms", "base,cuma_gated"]) == 0
    assert "equal samples: probes included" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--dry-run", "--budget", "equal_time"])
    assert "invalid choice: 'equal_time'" in capsys.readouterr().err
