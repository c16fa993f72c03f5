"""Checkpoints and resume: kill -9 or Ctrl-C, then `--resume`, gives exactly the uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agents.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from agents.config import ConfigError, load_config
from agents.rollout import RecordingStream
from agents.run_outputs import TIME_COLUMNS, read_csv
from agents.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 6, 2


def overrides(base_dir) -> list[str]:
    return [f"model.path={base_dir}", f"train.steps={STEPS}", f"output.checkpoint_every={EVERY}", "eval.every=3",
            "rollout.prompts_per_step=4", "eval.n_per_level=6", "eval.samples=2", "output.progress=false",
            "output.tensorboard=false", "curriculum.options.min_steps=4", "curriculum.options.window=4",
            "curriculum.options.probe_interval=4", "curriculum.options.agreement_threshold=0.3",
            "curriculum.options.max_mask_rate=1.0", "env.min_votes=0.5"]


def train_cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "agents.commands.train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.05)


def steps_logged(run_dir: Path) -> int:
    return len(read_csv(run_dir / "metrics.csv"))


def comparable(run_dir: Path) -> tuple[list[dict], list[dict]]:
    metrics = [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in read_csv(run_dir / "metrics.csv")]
    evals = [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(run_dir / "eval.csv")]
    return metrics, evals


def weights_digest(run_dir: Path) -> str:
    state = load_checkpoint(latest_checkpoint(run_dir))["model"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def uninterrupted(tiny_base_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("resume") / "straight"
    Trainer.new(load_config(preset="tiny-cuma-gated", overrides=overrides(tiny_base_dir)), run_dir).run()
    return run_dir


def test_kill_9_then_resume_matches_the_uninterrupted_run(tiny_base_dir, uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    proc = train_cli("--out", str(run_dir), *overrides(tiny_base_dir))
    # kill after the first checkpoint, once a step past it has been logged (so rows must be rolled back)
    wait_for(lambda: latest_checkpoint(run_dir) is not None and steps_logged(run_dir) >= EVERY + 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = list_checkpoints(run_dir)[-1][0]
    assert killed_at < STEPS
    resumed = train_cli("--resume", str(run_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert comparable(run_dir) == comparable(uninterrupted)
    assert weights_digest(run_dir) == weights_digest(uninterrupted)
    assert [s for s, _ in list_checkpoints(run_dir)] == [s for s, _ in list_checkpoints(uninterrupted)]


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes_identically(tiny_base_dir, uninterrupted, tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = train_cli("--out", str(run_dir), *overrides(tiny_base_dir))
    wait_for(lambda: steps_logged(run_dir) >= 3, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "checkpoint saved" in out and f"--resume {run_dir}" in out
    stopped = list_checkpoints(run_dir)[-1][0]
    assert stopped >= 3 and stopped == steps_logged(run_dir)
    resumed = train_cli("--resume", str(run_dir), "output.progress=false")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert comparable(run_dir) == comparable(uninterrupted)


def test_resume_refuses_changes_that_would_alter_the_run(uninterrupted, tmp_path):
    with pytest.raises(ConfigError, match="cannot change train.lr when resuming"):
        Trainer.resume(uninterrupted, ["train.lr=1e-4"])
    assert Trainer.resume(uninterrupted, ["output.progress=true"]).config.output.progress
    saved = (uninterrupted / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"train.steps=1 is below the \d+ steps the checkpoint has run"):
        Trainer.resume(uninterrupted, ["train.steps=1"])
    assert (uninterrupted / "config.yaml").read_text() == saved  # a refused resume leaves the run as it was
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer.new(load_config(), uninterrupted)
    with pytest.raises(ConfigError, match="not a run directory"):
        Trainer.resume(tmp_path)


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"x": torch.tensor([step])}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    stale = tmp_path / "checkpoints" / ".step-0000004.pt.tmp-999"  # a writer killed mid-write
    stale.write_bytes(b"\x00" * 10)
    assert latest_checkpoint(tmp_path).name == "step-0000003.pt"
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 3
    save_checkpoint(tmp_path, 4, {"x": torch.tensor([4])}, keep=2)
    assert not stale.exists() and [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def test_checkpoints_load_without_unpickling_code(uninterrupted, tmp_path):
    """A run's checkpoint loads with weights_only=True; a file carrying pickled code is refused, not run."""
    state = load_checkpoint(latest_checkpoint(uninterrupted))
    assert {"model", "learner", "rng", "stream", "trainer"} <= set(state)
    hostile = tmp_path / "checkpoints" / "step-0000001.pt"
    hostile.parent.mkdir()
    torch.save({"step": 1, "payload": _RunsCodeWhenUnpickled()}, hostile)
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(hostile)


def test_the_recording_stream_replays_pipelined_draws_exactly():
    """Batch k+1 is drawn before batch k is voted on; a restore must redraw k+1, then continue identically."""
    from cuma_env.arithmetic import ArithmeticSource
    from curricula import CurriculumStream

    def make():
        return RecordingStream(CurriculumStream({"name": "agreement_gated", "min_steps": 2, "window": 2},
                                                ArithmeticSource("train"), seed=5), draws_per_batch=3)

    def info(problem, agreement):
        return {"level": problem.level, "problem_id": problem.id, "agreement": agreement, "masked": False,
                "majority": problem.id, "majority_count": 8, "group_size": 8, "parse_rate": 1.0}

    def run(stream, batches, start_state=None):
        if start_state is not None:
            stream.load_state_dict(start_state)
        drawn, pending = [], [stream.next_problem() for _ in range(3)]
        for _ in range(batches):
            nxt = [stream.next_problem() for _ in range(3)]  # the collector's reset after the step
            for p in pending:
                stream.observe(info(p, 1.0))                 # the vote on the replay-buffer write path
            drawn.append([p.id for p in pending])
            pending = nxt
        return drawn

    straight = make()
    full = run(straight, 6)
    first = make()
    head = run(first, 3)
    state = first.state_dict()
    tail = run(make(), 3, start_state=state)
    assert head + tail == full
    assert straight.stream.schedule.level() > 1  # the schedule did move, so the replay mattered


def test_resume_drops_metric_rows_logged_after_the_checkpoint(tmp_path):
    from agents.run_outputs import RunOutputs

    outputs = RunOutputs(tmp_path, tensorboard=False)
    for step in range(1, 6):
        outputs.log_step({"step": step, "reward": 0.5, "level": 1})
    outputs.log_eval(4, {"levels": {1: {"n": 2, "greedy": 1.0, "pass1": 1.0, "maj": 1.0, "parse_rate": 1.0}},
                         "collapse": 0.5, "seconds": 0.1})
    with open(tmp_path / "metrics.csv", "a") as handle:
        handle.write("6,0.5")  # a line cut short by kill -9
    RunOutputs(tmp_path, tensorboard=False, resume_step=3)
    assert [r["step"] for r in read_csv(tmp_path / "metrics.csv")] == ["1", "2", "3"]
    assert read_csv(tmp_path / "eval.csv") == []
