"""The arms and contrasts of `cuma study` (docs/study-protocol.md): each arm a `cuma reproduce` method plus
overrides, so an arm is trained by the same runner and presets as `cuma reproduce`.

Voting rules: "one" = the unanswered vote together as one cluster (TTRL's code, `env.empty_votes=true`);
"never" = the unanswered never vote (the package's convention, `env.empty_votes=false`). Arms are compared at
equal optimizer steps and equal training batches; the agreement-gated arms also generate probe groups, which
the study counts and reports as samples.

`ArmTable` is what one study may run: these arms and contrasts, plus those of an arms file
(`agents.experiments.study_arms_file`, `cuma study --arms-file`), whose cells record the arm's whole spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agents.experiments.arms import METHODS

VOTES = ("one", "never", "-")  # the unanswered vote as one cluster, never vote, or the arm has no vote


@dataclass(frozen=True)
class StudyArm:
    name: str
    method: str                     # the `cuma reproduce` method (preset + its overrides) it starts from
    overrides: tuple[str, ...] = ()
    votes: str = "never"            # how the unanswered vote: "one" (a cluster), "never", "-" (no vote)
    design_only: bool = False       # run only in the design world (the decomposition of the gated recipe)
    description: str = ""
    tuned: tuple[str, ...] = ()     # overrides chosen in the tiny design world (stage 1): tiny worlds only; a model
                                    # world's arms keep its presets' values

    @property
    def trains(self) -> bool:
        return METHODS[self.method].preset is not None

    @property
    def labels(self) -> str:
        return METHODS[self.method].labels

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "method": self.method, "overrides": list(self.overrides), "votes": self.votes,
                "design_only": self.design_only, "description": self.description}
        if self.tuned:
            data["tuned"] = list(self.tuned)
        return data


_GATED = "agreement-gated curriculum with probes, mask unless >= 6 of 8 agree"
# Stage 1 of docs/study-protocol.md (design world, validation split, 3 seeds; docs/results/study-tuning.md): the
# learning rate each arm keeps. 3e-5 won for oracle, ttrl, ttrl_novote and the gated arms; intuitor (which
# collapsed at 3e-5) and cuma keep the presets' 1e-5. The gated recipe's decomposition arms follow cuma_gated.
# The gated mask share stays at 6 of 8 (5 of 8 was within 0.01).
LR_TUNED = "train.lr=3e-5"
ARMS: dict[str, StudyArm] = {a.name: a for a in (
    StudyArm("base", "base", votes="-", description="the world's base, evaluated without training"),
    StudyArm("oracle", "oracle", votes="-", tuned=(LR_TUNED,),
             description="GRPO with the ground-truth reward (labelled upper bound)"),
    StudyArm("intuitor", "intuitor", votes="-", description="self-certainty reward, levels uniform"),
    StudyArm("ttrl", "ttrl", votes="one", tuned=(LR_TUNED,),
             description="TTRL as its code votes: majority reward, no mask, uniform"),
    StudyArm("ttrl_novote", "ttrl", ("env.empty_votes=false",), tuned=(LR_TUNED,),
             description="TTRL where the unanswered never vote"),
    StudyArm("cuma", "cuma", description="paper-exact CuMa: 2-vote mask, sequential curriculum D1->D5"),
    StudyArm("cuma_gated", "cuma_gated", tuned=(LR_TUNED,), description=_GATED),
    StudyArm("cuma_gated_vote", "cuma_gated", ("env.empty_votes=true",), votes="one", tuned=(LR_TUNED,),
             description=f"{_GATED}; the unanswered vote as one cluster (TTRL's rule)"),
    StudyArm("gated_mask_uniform", "cuma_gated",
             ("curriculum.schedule=uniform", "curriculum.options={}", "curriculum.probe=false"), tuned=(LR_TUNED,),
             design_only=True,
             description="the gated recipe's 6-of-8 mask alone: levels uniform, no curriculum, no probes"),
    StudyArm("gated_2vote", "cuma_gated", ("env.min_votes=2",), tuned=(LR_TUNED,), design_only=True,
             description="the gated curriculum (with probes) and the paper's 2-vote mask"),
    StudyArm("gated_noprobe", "cuma_gated", ("curriculum.probe=false",), tuned=(LR_TUNED,), design_only=True,
             description="the gated curriculum without probes (promotes on its own agreement alone)"),
    # controls and a field baseline (cuma_env.control_rewards), at their presets' lr (not tuned in stage 1)
    StudyArm("random_reward", "random_reward", votes="-",
             description="spurious-reward control: a fair coin per completion, levels uniform"),
    StudyArm("format_only", "format_only", votes="-",
             description="control: 1 for any parsed answer, right or wrong, levels uniform"),
    StudyArm("empo", "empo", votes="-", description="EMPO: the answer cluster's share of the group, levels uniform"),
    StudyArm("ttrl_vote_n", "ttrl", ("rollout.vote_group_size=32",), votes="one", tuned=(LR_TUNED,),
             description="TTRL's own shape: majority voted on 32 completions per prompt, a seeded random 8 trained "
                         "on (4x the generation of ttrl)"),
)}
ARM_ORDER: tuple[str, ...] = tuple(ARMS)
# the grid of `cuma study` without --arms: study 1's arms (docs/study-protocol.md); the controls and baselines
# added for study 2 run when named (docs/study2-protocol.md names them)
STUDY1_ARMS: tuple[str, ...] = ARM_ORDER[:ARM_ORDER.index("random_reward")]
QUICK_ARMS: tuple[str, ...] = ("base", "cuma_gated")


@dataclass(frozen=True)
class Contrast:
    a: str
    b: str
    why: str
    hypothesis: str = ""            # the protocol's hypothesis it decides ("" : reported, decides nothing)

    @property
    def name(self) -> str:
        return f"{self.a} - {self.b}"

    def to_dict(self) -> dict[str, str]:
        return {"a": self.a, "b": self.b, "why": self.why, "hypothesis": self.hypothesis}


CONTRASTS: tuple[Contrast, ...] = (
    Contrast("cuma_gated", "base", "the label-free gain", "H1"),
    Contrast("cuma_gated", "ttrl_novote", "gated vs TTRL with the same voting rule (unanswered never vote)", "H2"),
    Contrast("cuma_gated_vote", "ttrl", "gated vs TTRL with the same voting rule (unanswered vote as one)", "H3"),
    Contrast("cuma_gated", "intuitor", "gated vs the other label-free baseline", "H4"),
    Contrast("cuma_gated", "cuma", "gated vs paper-exact CuMa", "H5"),
    Contrast("cuma", "ttrl", "paper-exact CuMa vs TTRL as its code votes", "H6"),
    Contrast("cuma", "ttrl_novote", "paper-exact CuMa vs TTRL with the same voting rule"),
    Contrast("ttrl_novote", "ttrl", "what the voting rule alone does to TTRL"),
    Contrast("cuma_gated", "gated_mask_uniform", "what the gated curriculum adds to its mask (design world)"),
    Contrast("cuma_gated", "gated_2vote", "what the 6-of-8 mask adds to the gated curriculum (design world)"),
    Contrast("cuma_gated", "gated_noprobe", "what the probes add (design world)"),
    Contrast("cuma_gated", "random_reward", "the gated gain beyond what any (spurious) reward does"),
    Contrast("cuma_gated", "format_only", "the gated gain beyond learning to answer at all"),
    Contrast("cuma", "format_only", "paper-exact CuMa's gain beyond learning to answer at all"),
    Contrast("cuma_gated", "empo", "gated vs EMPO, another label-free baseline"),
    Contrast("ttrl_vote_n", "ttrl", "what voting on 32 (TTRL's N->M shape) adds over voting on the 8 trained on"),
    Contrast("cuma_gated", "ttrl_vote_n", "gated vs TTRL in its own N->M shape"),
)


@dataclass(frozen=True)
class ArmTable:
    """The arms a study may run, in table order, and its contrasts: the shipped ones plus `added` (an arms
    file's, after them). The added arms' names and hypotheses may not clash with the shipped ones; an added
    contrast of a shipped pair must carry a hypothesis label, and then replaces the shipped entry (a protocol
    of one's own decides that pair under its own label)."""

    added: tuple[StudyArm, ...] = ()
    added_contrasts: tuple[Contrast, ...] = ()

    def __post_init__(self) -> None:
        names = [a.name for a in self.added]
        for arm in self.added:
            if arm.name in ARMS:
                raise ValueError(f"arm {arm.name!r} is a shipped arm; give yours another name")
            if names.count(arm.name) > 1:
                raise ValueError(f"arm {arm.name!r} is defined twice")
            if arm.method not in METHODS:
                raise ValueError(f"arm {arm.name!r}: unknown method {arm.method!r}; choose from {', '.join(METHODS)}")
            if arm.votes not in VOTES:
                raise ValueError(f"arm {arm.name!r}: votes must be one of {', '.join(VOTES)}, got {arm.votes!r}")
        shipped = {(c.a, c.b) for c in CONTRASTS}
        used = {c.hypothesis for c in CONTRASTS if c.hypothesis}
        for c in self.added_contrasts:
            unknown = [n for n in (c.a, c.b) if n not in self.arms]
            if unknown:
                raise ValueError(f"contrast {c.name!r}: unknown arm {unknown[0]!r}; choose from {', '.join(self.arms)}")
            if c.a == c.b:
                raise ValueError(f"contrast {c.name!r} compares an arm with itself")
            if (c.a, c.b) in shipped and not c.hypothesis:
                raise ValueError(f"contrast {c.name!r} is a shipped contrast already; give it a hypothesis label "
                                 "to decide it under yours")
            if c.hypothesis and c.hypothesis in used:
                raise ValueError(f"contrast {c.name!r}: hypothesis {c.hypothesis!r} is taken; give it another label")
            used.add(c.hypothesis)

    @property
    def arms(self) -> dict[str, StudyArm]:
        return {**ARMS, **{a.name: a for a in self.added}}

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self.arms)

    @property
    def default_order(self) -> tuple[str, ...]:
        """The arms a study runs when none is named: study 1's, then the added ones."""
        return (*STUDY1_ARMS, *(a.name for a in self.added))

    @property
    def contrasts(self) -> tuple[Contrast, ...]:
        relabelled = {(c.a, c.b): c for c in self.added_contrasts}
        shipped = tuple(relabelled.pop((c.a, c.b), c) for c in CONTRASTS)
        return shipped + tuple(c for c in self.added_contrasts if (c.a, c.b) in relabelled)

    def arm(self, name: str) -> StudyArm:
        try:
            return self.arms[name]
        except KeyError:
            raise ValueError(f"unknown arm {name!r}; choose from {', '.join(self.order)}") from None

    def is_added(self, name: str) -> bool:
        return name in {a.name for a in self.added}

    def check(self, names) -> list[str]:
        """The arms in table order; a `ValueError` naming the unknown ones."""
        unknown = [n for n in names if n not in self.arms]
        if unknown:
            raise ValueError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(self.order)}")
        return [a for a in self.order if a in set(names)]

    def all_contrasts(self, arms) -> list[Contrast]:
        """Every trained arm vs the base, then the named contrasts, for the arms present."""
        present = set(arms)
        vs_base = [Contrast(a, "base", "vs the base") for a in self.order if a in present and a != "base"]
        named = [c for c in self.contrasts if c.a in present and c.b in present]
        return [c for c in vs_base if (c.a, c.b) not in {(n.a, n.b) for n in named}] + named

    def to_dict(self) -> dict[str, Any]:
        """The added arms and contrasts (study.json's `arms_file`): a report can name them without the file."""
        return {"arms": [a.to_dict() for a in self.added], "contrasts": [c.to_dict() for c in self.added_contrasts]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ArmTable:
        if not data:
            return SHIPPED_TABLE
        arms = tuple(StudyArm(**{**a, "overrides": tuple(a.get("overrides", ()))}) for a in data.get("arms", ()))
        return cls(arms, tuple(Contrast(**c) for c in data.get("contrasts", ())))


SHIPPED_TABLE = ArmTable()


def all_contrasts(arms) -> list[Contrast]:
    """Every trained arm vs the base, then the protocol's contrasts, for the arms present (shipped arms)."""
    return SHIPPED_TABLE.all_contrasts(arms)


def check_arms(names) -> list[str]:
    """The arms in table order; a `ValueError` naming the unknown ones (shipped arms)."""
    return SHIPPED_TABLE.check(names)


__all__ = ["ARMS", "ARM_ORDER", "CONTRASTS", "QUICK_ARMS", "SHIPPED_TABLE", "STUDY1_ARMS", "VOTES", "ArmTable",
           "Contrast",
           "StudyArm", "all_contrasts", "check_arms"]
