"""The label-free statistics a curriculum may read from a finished episode (one scored group).

`stats_from_info(info)` turns the step `info` of either environment face (`cuma_env.episode.score_group`)
into an `EpisodeStats`. Only fields computable without the hidden answer survive: the diagnostics
`correct` / `majority_correct` are never copied, whatever the info holds, so a schedule cannot read labels
even by accident. (Use them for *logging* only, as `examples/curriculum_sweep.py` does, outside the schedule.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from cuma_env.rewards import reward_uses_labels

# Keys of the step info that carry labels; a schedule must never see them.
LABEL_KEYS: frozenset[str] = frozenset({"correct", "majority_correct", "answer", "reference"})


@dataclass(frozen=True)
class EpisodeStats:
    """What one group tells a curriculum, with nothing that needs a label.

    agreement: largest answer cluster / group size (unparsed answers count in the size, never in a cluster).
    masked: the reward masked the group (no learning signal).
    parse_rate: share of the group with an extractable answer.
    majority: the canonical majority answer (None if nothing parsed); compared *across prompts* for the
        collapse sign (`cuma_env.episode.prompt_concentration`).
    majority_count: size of the largest cluster.
    mean_abs_advantage: mean |r_i - mean(r)| over the group (0 when masked): the un-normalised GRPO
        advantage magnitude, i.e. how much the group can teach.
    """

    level: int | None
    agreement: float
    masked: bool
    parse_rate: float
    majority: str | None
    majority_count: int
    group_size: int
    problem_id: str | None = None
    mean_abs_advantage: float = 0.0

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")
        if not 0.0 <= self.agreement <= 1.0 + 1e-9:
            raise ValueError(f"agreement must be in [0, 1], got {self.agreement}")
        if not 0 <= self.majority_count <= self.group_size:
            raise ValueError(f"majority_count must be in 0..{self.group_size}, got {self.majority_count}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeStats:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _mean_abs_advantage(info: Mapping[str, Any], group_size: int, majority_count: int, masked: bool) -> float:
    """From the reward's values only when the reward declares itself label-free (`uses_labels = False`);
    for any other reward (ground truth, an unregistered callable) from the vote instead."""
    if masked:
        return 0.0
    rewards = info.get("rewards")
    if not reward_uses_labels(info.get("reward_name")) and rewards is not None and len(rewards) == group_size:
        values = [float(r) for r in rewards]
    else:  # labelled or unknown reward: use the majority reward implied by the vote
        values = [1.0] * majority_count + [0.0] * (group_size - majority_count)
    mean = sum(values) / len(values)
    return sum(abs(v - mean) for v in values) / len(values)


def stats_from_info(info: Mapping[str, Any] | EpisodeStats) -> EpisodeStats:
    """The label-free `EpisodeStats` of one scored group's info dict (labels are dropped, never read)."""
    if isinstance(info, EpisodeStats):
        return info
    missing = [k for k in ("agreement", "masked") if k not in info]
    if missing:
        raise KeyError(f"episode info lacks {missing}; pass the info of a scored group "
                       "(cuma_env.score_group / env.step), not the info of reset()")
    answers = info.get("answers")
    group_size = int(info.get("group_size") or (len(answers) if answers is not None else 0) or 1)
    agreement = float(info["agreement"])
    count = info.get("majority_count")
    majority_count = int(round(agreement * group_size)) if count is None else int(count)
    if "parse_rate" in info:
        parse_rate = float(info["parse_rate"])
    elif answers is not None:
        parse_rate = sum(a is not None for a in answers) / max(len(answers), 1)
    else:
        parse_rate = 1.0
    masked = bool(info["masked"])
    majority = info.get("majority")
    level = info.get("level")
    return EpisodeStats(
        level=None if level is None else int(level),
        agreement=agreement,
        masked=masked,
        parse_rate=parse_rate,
        majority=None if majority is None else str(majority),
        majority_count=majority_count,
        group_size=group_size,
        problem_id=None if info.get("problem_id") is None else str(info["problem_id"]),
        mean_abs_advantage=_mean_abs_advantage(info, group_size, majority_count, masked),
    )
