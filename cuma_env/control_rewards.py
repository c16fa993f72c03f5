"""The controls of a label-free gain and one more label-free baseline of the field, as group rewards.

A label-free reward may lift accuracy only because the policy learns to answer at all, or because any reward
perturbs training (random rewards lift some models: Shao et al. 2025, "Spurious Rewards: Rethinking Training
Signals in RLVR"). These rewards separate those from agreeing on the right answer:

- `random_reward`: a fair coin per completion, whatever it says (the spurious-reward control);
- `format_only`: 1 for any parsed answer (the "learning to answer" control);
- `cluster_share`: EMPO's semantic-cluster reward (another label-free baseline).

None reads the hidden answer and none masks; `cuma_env.rewards.REWARDS` registers them.
"""

from __future__ import annotations

import hashlib

from cuma_env.reward_types import Group, GroupOutcome

RANDOM_REWARD_SALT = b"cuma-random-reward-v1"


class RandomReward:
    """A fair 0/1 coin per completion, independent of what it answers (the spurious-reward paper's random reward,
    Bernoulli(0.5)). Never masks.

    Reproducible without hidden state: each coin is one bit of a keyed BLAKE2 hash of (`salt`, problem id, the
    completion's position, its text and the whole group's texts), so the same rollouts (the same config seed)
    give the same coins on any machine and in any process (Python's `hash()` is salted per process; this is not).
    The group's texts enter the hash so that no completion text earns a lasting coin: the same text in another
    group draws a fresh coin, and a policy cannot learn to prefer texts the hash happens to favour.
    """

    name = "random_reward"
    uses_labels = False

    def __init__(self, salt: bytes | str = RANDOM_REWARD_SALT):
        self.salt = salt.encode() if isinstance(salt, str) else bytes(salt)
        if not 0 < len(self.salt) <= 64:
            raise ValueError(f"random_reward: salt must be 1 to 64 bytes, got {len(self.salt)}")

    def coins(self, problem_id: str, completions: tuple[str, ...]) -> tuple[float, ...]:
        group = hashlib.blake2b(key=self.salt, digest_size=32)
        for part in (str(problem_id), *completions):
            data = part.encode("utf-8", "surrogatepass")
            group.update(len(data).to_bytes(8, "little") + data)  # length-prefixed: no two groups hash alike
        digest = group.digest()
        return tuple(float(hashlib.blake2b(digest + i.to_bytes(4, "little") + text.encode("utf-8", "surrogatepass"),
                                           key=self.salt, digest_size=8).digest()[0] & 1)
                     for i, text in enumerate(completions))

    def __call__(self, group: Group) -> GroupOutcome:
        return GroupOutcome(rewards=self.coins(group.problem.id, group.completions), masked=False)


class FormatOnly:
    """1 for a completion with a parsed answer (`group.answers[i] is not None`), else 0, right or wrong: the
    control for a gain that comes from learning to answer at all. Never masks."""

    name = "format_only"
    uses_labels = False

    def __call__(self, group: Group) -> GroupOutcome:
        return GroupOutcome(rewards=tuple(0.0 if a is None else 1.0 for a in group.answers), masked=False)


class ClusterShare:
    """EMPO (Zhang et al. 2025, "Right Question is Already Half the Answer: Fully Unsupervised LLM Reasoning
    Incentivization", arXiv 2504.05812; its code's `semantic_entropy_math_reward`): each answered completion gets
    the share of the whole group (G) in its answer's cluster, the unanswered get 0. Maximising it minimises the
    semantic entropy of the group's answers. Never masks.

    Unlike majority vote (TTRL, `majority`), which gives 1 to the largest cluster and 0 to everything else
    (a tie goes to the earliest cluster), every answered completion is paid by its cluster's size: a 3-3-2 split
    pays 3/8, 3/8 and 2/8 rather than one arbitrary winner, and a minority answer still beats no answer. As in
    EMPO's code (its entropy threshold at log G), a group where no two completions agree (the unanswered counted
    together as one cluster) gets 0 everywhere. Clusters are the vote's (equivalent answers merge, as EMPO's
    `verify` does), read whatever `empty_votes` says: the unanswered never earn a share.
    """

    name = "cluster_share"
    uses_labels = False

    def __call__(self, group: Group) -> GroupOutcome:
        rewards = [0.0] * group.size
        answered = [m for m in group.vote.clusters if group.answers[m[0]] is not None]
        unanswered = sum(a is None for a in group.answers)
        if max([len(m) for m in answered] + [unanswered]) < 2:  # every completion alone: EMPO's entropy filter
            return GroupOutcome(rewards=tuple(rewards), masked=False)
        for members in answered:
            for i in members:
                rewards[i] = len(members) / group.size
        return GroupOutcome(rewards=tuple(rewards), masked=False)


__all__ = ["RANDOM_REWARD_SALT", "ClusterShare", "FormatOnly", "RandomReward"]
