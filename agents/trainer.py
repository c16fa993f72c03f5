"""The training loop: collect -> vote -> GRPO step, with held-out evaluation, checkpoints and resume.

    trainer = Trainer(load_config(preset="tiny-cuma-gated"), run_dir="runs/demo")
    summary = trainer.run()                       # or Trainer.resume("runs/demo").run()

Each step: `Rollout.collect()` samples P prompts x G responses with the current weights and votes on them
(the curriculum hears every group), `Learner.step()` makes one optimizer step on the groups that carry a
gradient. Held-out evaluation runs before the first step, every `eval.every` steps and at the end.
`train.max_samples` (a budget of generated completions, for equal-compute comparisons) also ends the loop,
cleanly, before a step whose training completions no longer fit: the count (`agents.sample_count`: training
groups and curriculum probes) is logged per step (`samples_total`), checkpointed, and the stop reason goes to
summary.json (`stopped`), the log and the report's title. Probes run during a step's vote, so that step's
probes can take the count past the budget; `train.steps` stays an upper bound.
Checkpoints every `output.checkpoint_every` steps, at the end, and on Ctrl-C (the first Ctrl-C finishes the
current step, saves and exits; a second one aborts at once). A resumed run continues with the same step,
curriculum and sampler state, optimizer, scheduler and RNG states: its next batch is the one the
uninterrupted run would have drawn, so its metrics match the uninterrupted run's exactly (CPU, same threads).
"""

from __future__ import annotations

import gc
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from agents.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from agents.config import RESUMABLE_KEYS, Config, ConfigError, diff_keys, from_dict, read_yaml, save_config
from agents.rollout import WorkerLost
from agents.sample_count import SampleCount
from cuma_env.episode import vote_metrics


class RunStopped(RuntimeError):
    """The run stopped early after saving a checkpoint; the message says how to continue it."""


class Trainer:
    def __init__(self, config: Config, run_dir: str | Path, *, checkpoint: Path | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.checkpoint = checkpoint
        self.step = 0
        self.stop_requested = False
        self._interrupts = 0
        self.evals: list[tuple[int, dict[str, Any]]] = []
        self.step_seconds: list[float] = []
        self.wall_before = 0.0
        self.samples = SampleCount()  # generated completions (training + probes): `train.max_samples`
        self.stop_reason: str | None = None  # steps | max_samples | interrupted, once the run ends
        self.built = False
        self._undo: tuple[Path | None, bytes | None] | None = None  # what `new` wrote, for `discard`

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def new(cls, config: Config, run_dir: str | Path) -> Trainer:
        run_dir = Path(run_dir)
        if latest_checkpoint(run_dir) is not None:
            raise ConfigError(f"{run_dir} already holds a run; continue it with `cuma train --resume {run_dir}` "
                              "or choose another --out")
        created = next((p for p in reversed((run_dir, *run_dir.parents)) if not p.exists()), None)
        saved = run_dir / "config.yaml"
        previous = saved.read_bytes() if saved.is_file() else None
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, saved)
        trainer = cls(config, run_dir)
        trainer._undo = (created, previous)
        return trainer

    def discard(self) -> None:
        """Undo `new` after a failed start: remove the directories it created, or its config.yaml (restoring one
        that was there before). Nothing that existed before `new` is removed."""
        if self._undo is None:
            return
        created, previous = self._undo
        self._undo = None
        if created is not None:
            import shutil

            shutil.rmtree(created, ignore_errors=True)
        elif previous is not None:
            (self.run_dir / "config.yaml").write_bytes(previous)
        else:
            (self.run_dir / "config.yaml").unlink(missing_ok=True)

    @classmethod
    def resume(cls, run_dir: str | Path, overrides: list[str] | None = None) -> Trainer:
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
        saved = from_dict(read_yaml(run_dir / "config.yaml"))
        config = saved.replace(overrides) if overrides else saved
        bad = [k for k in diff_keys(saved, config) if k not in RESUMABLE_KEYS]
        if bad:
            allowed = ", ".join(sorted(RESUMABLE_KEYS))
            raise ConfigError(f"cannot change {', '.join(bad)} when resuming (only {allowed})")
        found = list_checkpoints(run_dir)
        if not found:
            raise ConfigError(f"{run_dir} has no checkpoint to resume from; start it again without --resume")
        done, checkpoint = found[-1]
        if config.train.steps < done:
            raise ConfigError(f"train.steps={config.train.steps} is below the {done} steps the checkpoint has run; "
                              f"resume with train.steps >= {done}")
        if config != saved:  # only once the run is known to be resumable
            save_config(config, run_dir / "config.yaml")
        return cls(config, run_dir, checkpoint=checkpoint)

    def build(self) -> None:
        """Load the model and build the rollout, learner, held-out set and outputs (`run` does it if not done).
        A setting this machine or the data cannot honour fails here, before any file but config.yaml is
        written: `ValueError`, `OSError` (a missing model or data file) or `agents.policy.BackendUnavailable`."""
        if self.built:
            return
        from agents.evaluation import heldout_set
        from agents.policy import build_policy

        c = self.config
        if c.train.max_samples is not None and c.train.max_samples < step_completions(c):
            raise ConfigError(f"train.max_samples={c.train.max_samples} is below one step's {step_completions(c)} "
                              "completions (rollout.prompts_per_step x the completions sampled per prompt): the run "
                              "could not take a step")
        self._heldout = heldout_set(c)  # held out, in the prompt the run trains on
        seed_everything(c.seed)
        self.policy = build_policy(c.model, c.rollout, seed=c.seed)
        self.rollout = make_rollout(c, self.policy)
        self.samples.watch_probes(getattr(self.rollout, "curriculum", None))
        try:
            self._build_rest()
        except BaseException:
            self.rollout.shutdown()  # Ray workers, when the run has them
            raise
        self.built = True

    def _build_rest(self) -> None:
        from agents.learner import Learner
        from agents.run_outputs import RunOutputs

        c = self.config
        self.learner = Learner(self.policy, c.train, c.rollout.group_size)
        state = load_checkpoint(self.checkpoint) if self.checkpoint is not None else None
        self.outputs = RunOutputs(self.run_dir, tensorboard=c.output.tensorboard,
                                  resume_step=None if state is None else int(state["step"]))
        if state is None:
            seed_everything(c.seed)
        else:
            self.policy.model.load_state_dict(state["model"])
            self.learner.load_state_dict(state["learner"])
            self.rollout.load_state_dict(state["stream"])
            self.policy.sync_weights()
            self.step = int(state["step"])
            self.wall_before = float(state["trainer"]["wall_s"])
            self.evals = [(s, r) for s, r in state["trainer"]["evals"]]
            self.step_seconds = list(state["trainer"]["step_seconds"])
            self._load_samples(state)
            set_rng_state(state["rng"])

    def _load_samples(self, state: dict[str, Any]) -> None:
        """The checkpoint's sample count; one from before the count existed is rebuilt as those runs generated:
        prompts x group per step, probe_size x group per probe (the stream's probe counter)."""
        saved = state["trainer"].get("samples")
        if saved is None:
            r, stream = self.config.rollout, state["stream"]
            probes = int(stream.get("post", stream).get("probes", 0))
            size = int(self.config.curriculum.options.get("probe_size", 8)) if self.config.curriculum.probe else 0
            one_step = r.prompts_per_step * r.group_size
            saved = {"train": self.step * one_step, "probe": probes * size * r.group_size, "last_step": one_step}
        self.samples.load_state_dict(saved)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        c = self.config
        self.build()
        unfreeze = freeze_setup()
        start = time.perf_counter()
        self._wall = lambda: self.wall_before + time.perf_counter() - start
        previous = signal.signal(signal.SIGINT, self._on_sigint) if _main_thread() else None
        bar = self._progress_bar()
        try:
            if self.step == 0 and not self.evals:
                self._evaluate()
            while self.step < c.train.steps and not self.stop_requested:
                if not self.samples.fits(c.train.max_samples, self._next_step_samples()):
                    self.stop_reason = "max_samples"
                    break
                try:
                    self._train_step(bar)
                except WorkerLost as exc:  # Ray workers only: saved as the unfinished step found things
                    self._save(self._step_start)
                    raise RunStopped(f"{exc}; checkpoint saved at step {self.step}. Continue with: "
                                     f"cuma train --resume {self.run_dir}") from None
                if c.eval.every and self.step % c.eval.every == 0 and self.step < c.train.steps:
                    self._evaluate()
                if self.step % c.output.checkpoint_every == 0 and self.step < c.train.steps:
                    self._save()
            if self.stop_requested and self.step < c.train.steps:
                self._save()
                print(f"\ninterrupted at step {self.step}; checkpoint saved. Continue with: "
                      f"cuma train --resume {self.run_dir}")
                self.stop_reason = "interrupted"
                return self._finish(interrupted=True)
            self.stop_reason = self.stop_reason or "steps"
            if not self.evals or self.evals[-1][0] != self.step:
                self._evaluate()
            self._save()
            self._save_model()
            return self._finish(interrupted=False)
        finally:
            if bar is not None:
                bar.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.rollout.shutdown()
            if unfreeze:
                gc.unfreeze()

    def _train_step(self, bar: Any) -> None:
        t0 = time.perf_counter()
        if getattr(self.rollout, "workers_can_fail", False):  # what a checkpoint of this step's start holds
            self._step_start = {"stream": self.rollout.state_dict(), "rng": rng_state(),
                                "samples": self.samples.state_dict()}
        batch = self.rollout.collect()
        self.samples.add_step(batch.infos, batch.extra.get("generated"))  # after the vote: its probes are in
        learn = self.learner.step(batch.data)
        self.rollout.weights_updated()
        self.step += 1
        step_s = time.perf_counter() - t0
        self.step_seconds.append(step_s)
        row = self._metrics(batch, learn)
        row.update(step=self.step, collect_s=batch.seconds, learn_s=learn.seconds, step_s=step_s,
                   wall_s=self._wall(), samples_total=self.samples.total, samples_probe=self.samples.probe)
        self.outputs.log_step(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(reward=f"{row['reward']:.2f}", mask=f"{row['mask_rate']:.2f}",
                            agree=f"{row['agreement']:.2f}", level=row["level"], refresh=False)

    def _next_step_samples(self) -> int:
        """The training completions the next step generates: the last step's (what this rollout generates per
        step), before the first step `step_completions`. Its probes are not known before its vote."""
        return self.samples.last_step or step_completions(self.config)

    def _metrics(self, batch: Any, learn: Any) -> dict[str, Any]:
        summary = self.rollout.summary()
        levels = [i["level"] for i in batch.infos if i.get("level") is not None]
        return {
            **vote_metrics(batch.infos),
            "level": summary.get("level"),
            "batch_level": statistics.fmean(levels) if levels else None,
            "kept_groups": batch.kept_groups,
            "probes": summary.get("probes"),
            "curriculum_concentration": summary.get("concentration"),
            **batch.extra,
            **{k: v for k, v in learn.to_dict().items() if k != "seconds"},
        }

    def _evaluate(self) -> None:
        from agents.evaluation import evaluate_heldout

        result = evaluate_heldout(self.policy, self.config, self._heldout, per_problem=True)
        problems = result.pop("problems")  # per problem: to eval_problems.jsonl, not into summaries and checkpoints
        self.evals.append((self.step, result))
        self.outputs.log_eval(self.step, result, problems)

    def _save(self, step_start: dict[str, Any] | None = None) -> None:
        """A checkpoint of now, or of the start of an unfinished step (`step_start`: its stream and RNG states;
        the weights and optimizer change only once a step's batch is in)."""
        state = {
            "model": {k: v.detach().cpu() for k, v in self.policy.model.state_dict().items()},
            "learner": self.learner.state_dict(),
            "stream": step_start["stream"] if step_start else self.rollout.state_dict(),
            "rng": step_start["rng"] if step_start else rng_state(),
            "trainer": {"wall_s": self._wall(), "evals": self.evals, "step_seconds": self.step_seconds,
                        "samples": step_start["samples"] if step_start else self.samples.state_dict()},
            "config": self.config.to_dict(),
        }
        save_checkpoint(self.run_dir, self.step, state, keep=self.config.output.keep_checkpoints)

    def _save_model(self) -> None:
        from agents.lora import has_lora

        target = self.run_dir / "model"
        if has_lora(self.policy.model):  # a plain model, adapters merged: its readers need no peft
            self._save_merged(target)
        else:
            self.policy.model.save_pretrained(target)
        self.policy.tokenizer.save_pretrained(target)

    def _save_merged(self, target: Path) -> None:
        """The adapted model saved as the plain architecture it came from, with the adapters merged in."""
        import torch
        from transformers import AutoModelForCausalLM

        from agents.lora import merged_state_dict

        with torch.random.fork_rng(devices=[]):  # its random init, overwritten at once, draws on a forked RNG
            plain = AutoModelForCausalLM.from_config(self.policy.model.config)
        plain.load_state_dict(merged_state_dict(self.policy.model))
        plain.generation_config = self.policy.model.generation_config
        plain.save_pretrained(target)

    def _finish(self, interrupted: bool) -> dict[str, Any]:
        from agents.evaluation import format_table, mean_over_levels

        c = self.config
        first, last = self.evals[0], self.evals[-1]
        timed = self.step_seconds[1:] or self.step_seconds  # the first step includes warm-up
        summary = {
            "name": c.name, "run_dir": str(self.run_dir), "steps": self.step, "interrupted": interrupted,
            "wall_s": round(self._wall(), 2),
            "step_s_median": round(statistics.median(timed), 4) if timed else None,
            "step_s_mean": round(statistics.fmean(timed), 4) if timed else None,
            "heldout_before": {"step": first[0], **first[1]}, "heldout_after": {"step": last[0], **last[1]},
            "heldout_peak_mean_greedy": max(mean_over_levels(r) for _, r in self.evals),
            "curriculum": self.rollout.summary(),
            "samples": {"train": self.samples.train, "probe": self.samples.probe, "total": self.samples.total},
            "max_samples": c.train.max_samples, "stopped": self.stop_reason,
        }
        budget = self._budget_line()
        self.outputs.write_summary(summary)
        self.outputs.write_report(f"{c.name}: {self.run_dir.name}" + (f" ({budget})" if budget else ""))
        if budget:
            print(budget)
        if not interrupted:
            print(format_table(first[1], f"held-out before (step {first[0]}):"))
            if last[0] != first[0]:  # train.steps 0 evaluates once
                print(format_table(last[1], f"held-out after (step {last[0]}):"))
            median = summary["step_s_median"]
            steps = "no training step" if median is None else f"median step {median} s"
            print(f"wall time {summary['wall_s']:.1f} s, {steps}; report: {self.run_dir / 'report.png'}")
        return summary

    def _budget_line(self) -> str | None:
        """Where the sample budget left the run (None without one)."""
        c = self.config
        if c.train.max_samples is None:
            return None
        why = {"max_samples": f"stopped at step {self.step} of {c.train.steps}: the next step would pass the sample "
                              "budget",
               "steps": f"ran its {c.train.steps} steps within the sample budget"}.get(self.stop_reason,
                                                                                         "interrupted")
        return (f"{why}; {self.samples.total} of train.max_samples={c.train.max_samples} completions generated "
                f"({self.samples.probe} by probes)")

    # --- interrupts and progress ---------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise KeyboardInterrupt
        self.stop_requested = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (press again to abort without saving)")

    def _progress_bar(self):
        if not self.config.output.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.train.steps, initial=self.step, desc=self.config.name, unit="step",
                    dynamic_ncols=True)


def step_completions(config: Config) -> int:
    """The completions one step samples for training: prompts x `rollout.vote_group_size` (the N voted on), else
    x `rollout.group_size`."""
    r = config.rollout
    return r.prompts_per_step * (getattr(r, "vote_group_size", None) or r.group_size)


def make_rollout(config: Config, policy: Any) -> Any:
    """The run's rollout: this process (`rollout.workers: 1`) or Ray workers (`agents.distributed`). Picked here,
    so `agents.rollout` never imports the Ray layer that builds on it."""
    if config.rollout.workers > 1:
        from agents.distributed import RayRollout

        return RayRollout(config, policy)
    from agents.rollout import Rollout

    return Rollout(config, policy)


def freeze_setup() -> bool:
    """Collect, then `gc.freeze()` what setup built (model, tokenizer, env, collector) so that Python's full
    collections stop traversing it (their cost: docs/performance.md). Returns whether the caller should
    `gc.unfreeze()` when done (not when something had frozen objects before: unfreezing would release those
    too)."""
    was_frozen = gc.get_freeze_count() > 0
    gc.collect()
    gc.freeze()
    return not was_frozen


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
