"""Group-level reward functions behind one interface.

A reward function sees a whole group (one prompt, G responses) and returns G rewards plus a mask flag.
The vote is computed once per group by the caller (`cuma_env.episode.score_group`) and handed to every
reward, so switching reward never changes the label-free statistics a curriculum sees.

| name              | paper role                    | labels? | masks?                                  |
|-------------------|-------------------------------|---------|-----------------------------------------|
| `masked_majority` | CuMa (default)                | no      | when the largest cluster < `min_votes`  |
| `majority`        | TTRL                          | no      | never                                   |
| `self_certainty`  | Intuitor                      | no      | never                                   |
| `ground_truth`    | GRPO with labels (upper bound)| yes     | never                                   |
| `random_reward`   | control: a fair coin each     | no      | never                                   |
| `format_only`     | control: 1 for any answer     | no      | never                                   |
| `cluster_share`   | EMPO: its cluster's share     | no      | never                                   |

The last three live in `cuma_env.control_rewards`: the controls that tell a gain from agreeing on the right
answer from one that any reward, or learning to answer at all, would give; and EMPO, a field baseline.

"labels?" is each reward's own `uses_labels` declaration, read wherever label-freeness matters (the curriculum
statistics read a reward's values only when it declares `uses_labels = False`); a reward that does not
declare it counts as using labels, the safe side.

Your own reward, wherever a name is accepted (`make_reward`, `gym.make(..., reward=...)`, `env.reward` of an
agent config): a `module:attr` import path, or the name an installed distribution registers in the entry point
group `cuma.rewards`. The object there may be a class (built with no arguments) whose instances are rewards, a
`GroupReward` instance, or a plain function `fn(group) -> GroupOutcome | G floats`. It is reported under the
name it was given (`info["reward_name"]`), so `reward_uses_labels` finds its declaration again. Built-in names
win over an entry point of the same name.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from cuma_env.control_rewards import ClusterShare, FormatOnly, RandomReward
from cuma_env.plugins import PluginError, load_plugin, plugin_names
from cuma_env.reward_types import Group, GroupOutcome, GroupReward


class MaskedMajority:
    """CuMa: 1 for agreeing with the majority answer; the group is masked when no answer has `min_votes`.

    The threshold itself lives in the vote (`min_votes` of the environment), so this reads it from there.
    """

    name = "masked_majority"
    uses_labels = False

    def __call__(self, group: Group) -> GroupOutcome:
        return GroupOutcome(rewards=group.vote.rewards, masked=group.vote.masked)


class Majority:
    """TTRL: 1 for agreeing with the largest cluster, whatever its size; never masks.

    The paper leaves open whether an unparseable answer votes; TTRL's own code counts an empty answer as a
    vote, so a group of mostly empty answers is rewarded for being empty. Here an unparseable answer votes
    only with the episode's `empty_votes=True` (TTRL's convention); by default a group with no answer at all
    gets zero rewards rather than rewarding emptiness.
    """

    name = "majority"
    uses_labels = False

    def __call__(self, group: Group) -> GroupOutcome:
        winners = set(group.vote.clusters[0]) if group.vote.clusters else set()
        return GroupOutcome(rewards=tuple(1.0 if i in winners else 0.0 for i in range(group.size)), masked=False)


class SelfCertainty:
    """Intuitor: the reward is each response's self-certainty, mean over its tokens of
    logsumexp(logits) - mean(logits) (= KL(uniform || p) up to a constant).

    The caller computes it from the policy's logits (see `agents`), since the environment never sees them;
    GRPO's group normalisation turns the raw values into advantages.
    """

    name = "self_certainty"
    uses_labels = False

    def __call__(self, group: Group) -> GroupOutcome:
        stats = group.token_stats
        if stats is None or len(stats) != group.size:
            raise ValueError("reward 'self_certainty' needs token_stats: one self-certainty value per response "
                             f"({group.size}), computed by the caller from the policy's logits")
        if not all(math.isfinite(float(v)) for v in stats):
            raise ValueError(f"self-certainty values must be finite, got {list(stats)}")
        return GroupOutcome(rewards=tuple(float(v) for v in stats), masked=False)


class GroundTruth:
    """GRPO with labels: 1 for an answer equivalent to the problem's hidden reference. Not label-free."""

    name = "ground_truth"
    uses_labels = True

    def __call__(self, group: Group) -> GroupOutcome:
        correct = reference_correctness(group)
        if correct is None:
            raise ValueError(f"reward 'ground_truth' needs a reference answer; problem {group.problem.id!r} has none")
        return GroupOutcome(rewards=tuple(1.0 if c else 0.0 for c in correct), masked=False)


def reference_correctness(group: Group) -> tuple[bool, ...] | None:
    """Per-response correctness against the hidden answer (None without one).

    One equivalence check per cluster, not per response: members of a cluster are equivalent already.
    """
    reference = group.problem.answer
    if reference is None:
        return None
    from cuma_env.answers import is_equivalent

    correct = [False] * group.size
    for members in group.vote.clusters:
        if group.answers[members[0]] is not None and is_equivalent(group.answers[members[0]], reference):
            for i in members:
                correct[i] = True
    return tuple(correct)


REWARDS: dict[str, Callable[[], GroupReward]] = {
    "masked_majority": MaskedMajority,
    "majority": Majority,
    "self_certainty": SelfCertainty,
    "ground_truth": GroundTruth,
    "random_reward": RandomReward,
    "format_only": FormatOnly,
    "cluster_share": ClusterShare,
}


REWARD_GROUP = "cuma.rewards"  # the entry point group of installed reward plugins
_EXPECTED = "a GroupReward class or instance, or a function group -> GroupOutcome | G floats"


class _CallableReward:
    """Adapts a user function `fn(group) -> GroupOutcome | Sequence[float]` (never masks if it returns floats).

    It uses labels unless `fn` declares `fn.uses_labels = False`: the adapter cannot see what `fn` reads.
    `name`: what `info["reward_name"]` says (default: the function's name).
    """

    def __init__(self, fn: Callable[[Group], GroupOutcome | Sequence[float]], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self.uses_labels = bool(getattr(fn, "uses_labels", True))

    def __call__(self, group: Group) -> GroupOutcome:
        out = self.fn(group)
        if isinstance(out, GroupOutcome):
            return out
        rewards = tuple(float(r) for r in out)
        return GroupOutcome(rewards=rewards, masked=False)


def reward_uses_labels(reward_name: str | None) -> bool:
    """Whether the reward named `reward_name` (built-in, `module:attr` or plugin) reads labels, by its own
    `uses_labels` declaration.

    A name that names nothing (a user callable's, None) or a reward without the declaration counts as using labels.
    """
    if not isinstance(reward_name, str):
        return True
    factory = REWARDS.get(reward_name)
    return _plugin_uses_labels(reward_name) if factory is None else bool(getattr(factory, "uses_labels", True))


@functools.lru_cache(maxsize=64)
def _plugin_uses_labels(name: str) -> bool:
    """Read once per process: the curriculum statistics ask for every scored group."""
    try:
        return bool(make_reward(name).uses_labels)
    except (TypeError, ValueError):
        return True


def _plugin_reward(name: str) -> GroupReward:
    """The reward a `module:attr` path or an installed `cuma.rewards` entry point names, under that name."""
    obj: Any = load_plugin(name, REWARD_GROUP, what="reward", expected=_EXPECTED)
    if obj is None:
        installed = plugin_names(REWARD_GROUP)
        plugins = f"; installed plugins: {', '.join(installed)}" if installed else ""
        raise ValueError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}{plugins}, give an import path "
                         "'module:attr', or pass a callable")
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - a user's class may raise anything
            raise PluginError(f"reward {name!r}: class {obj.__name__} cannot be built with no arguments "
                              f"({' '.join(str(exc).split())}); expected {_EXPECTED}") from None
    if not callable(obj):
        raise PluginError(f"reward {name!r}: the object is of type {type(obj).__name__}, not callable; "
                          f"expected {_EXPECTED}")
    return _CallableReward(obj, name=name)


def make_reward(reward: str | GroupReward | Callable[[Group], GroupOutcome | Sequence[float]]) -> GroupReward:
    """A reward by name (a key of `REWARDS`: the table of the module docstring), by `module:attr` path or
    installed plugin name (see the module docstring), or a callable. A bad path is one `PluginError` line."""
    if isinstance(reward, str):
        if reward in REWARDS:
            return REWARDS[reward]()
        return _plugin_reward(reward.strip())
    if hasattr(reward, "name") and hasattr(reward, "uses_labels") and callable(reward):
        return reward  # already a GroupReward
    if callable(reward):
        return _CallableReward(reward)
    raise TypeError(f"reward must be a name or a callable, got {type(reward).__name__}")
