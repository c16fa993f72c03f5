"""`CuMaCallback`: checks a TRL config against the CuMa reward and curriculum, and keeps the curriculum's state
in TRL's checkpoints.

    feed = CurriculumFeed(stream, "CuMa-Arith-v0")
    reward = make_reward_func(stream=feed)
    trainer = GRPOTrainer(..., reward_funcs=reward, train_dataset=feed.dataset(), callbacks=[CuMaCallback(reward)])

At trainer construction (`on_init_end`) one clear error for: `num_generations` not equal to the reward's
`group_size`; with a curriculum, `shuffle_dataset=True` (TRL's buffered shuffle would draw ~1000 problems
ahead of the curriculum) or `ignore_data_skip=False` (a resume would draw and discard a batch per trained
step; the feed restores its own position instead). On every checkpoint (`on_save`) the process of rank 0
writes the feed's state to `<checkpoint>/cuma_curriculum.json`; on resume (`on_train_begin` with a global
step > 0) every process reads it back from `resume_from`, `args.resume_from_checkpoint` or
`<output_dir>/checkpoint-<global step>`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from cuma_env.atomic_io import atomic_file

STATE_FILE = "cuma_curriculum.json"


class CuMaCallback(TrainerCallback):
    """Args:
        reward: the `make_reward_func` result (its `group_size` is checked; its stream is the default curriculum).
        curriculum: a `CurriculumFeed` to checkpoint (default: `reward.stream` when that is one).
        resume_from: the checkpoint folder to restore the curriculum from (default: see the module docstring).
    """

    def __init__(self, reward: Any = None, curriculum: Any = None, *, resume_from: str | os.PathLike | None = None):
        stream = getattr(reward, "stream", None)
        if curriculum is None and hasattr(stream, "state_dict") and hasattr(stream, "load_state_dict"):
            curriculum = stream  # the reward's own curriculum feed
        stateful = hasattr(curriculum, "state_dict") and hasattr(curriculum, "load_state_dict")
        if curriculum is not None and not stateful:
            raise TypeError(f"curriculum must have state_dict/load_state_dict (a CurriculumFeed), got "
                            f"{type(curriculum).__name__}")
        self.reward = reward
        self.curriculum = curriculum
        self.resume_from = None if resume_from is None else Path(resume_from)
        self.restored_from: Path | None = None

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        check_config(args, self.reward, self.curriculum)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        check_config(args, self.reward, self.curriculum)
        if self.curriculum is None or state.global_step == 0:
            return
        path = self._checkpoint_file(args, state.global_step)
        self.curriculum.load_state_dict(json.loads(path.read_text()))
        self.restored_from = path.parent

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.curriculum is None or not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / STATE_FILE) as handle:
            json.dump(self.curriculum.state_dict(), handle)

    def _checkpoint_file(self, args: Any, step: int) -> Path:
        candidates = [self.resume_from, getattr(args, "resume_from_checkpoint", None),
                      Path(args.output_dir) / f"checkpoint-{step}"]
        tried = []
        for folder in candidates:
            if isinstance(folder, (str, Path)) and folder:
                path = Path(folder) / STATE_FILE
                if path.is_file():
                    return path
                tried.append(str(path))
        raise FileNotFoundError(f"resuming at step {step} but no curriculum state was found (looked for "
                                f"{', '.join(tried)}); pass CuMaCallback(resume_from=CHECKPOINT_DIR)")


def check_config(args: Any, reward: Any = None, curriculum: Any = None) -> None:
    """One `ValueError` line naming the first GRPOConfig setting that does not fit the reward or curriculum."""
    group_size = getattr(reward, "group_size", None)
    generations = getattr(args, "num_generations", None)
    if group_size is not None and generations is not None and generations != group_size:
        raise ValueError(f"GRPOConfig num_generations={generations} but the CuMa reward votes on groups of "
                         f"{group_size}: set num_generations={group_size} or make_reward_func(group_size="
                         f"{generations})")
    if curriculum is None:
        return
    if getattr(args, "shuffle_dataset", False):
        raise ValueError("GRPOConfig shuffle_dataset=True would make TRL draw ~1000 problems ahead of the "
                         "curriculum (a buffered shuffle): set shuffle_dataset=False")
    if not getattr(args, "ignore_data_skip", False):
        raise ValueError("GRPOConfig ignore_data_skip=False would make a resumed run draw and discard a batch of "
                         "problems per trained step; the curriculum restores its own position: set "
                         "ignore_data_skip=True")
