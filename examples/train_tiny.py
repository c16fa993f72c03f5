"""The CuMa agent in a few lines of API: TorchRL collector + group vote + GRPO on the embedded tiny base.

    OMP_NUM_THREADS=1 python examples/train_tiny.py [STEPS]      # 40 steps: ~1 min on a laptop CPU

`cuma train` does the same with checkpoints, evaluation, CSV metrics and the report; this is the bare loop.
"""

import sys

from agents.checkpoint import seed_everything
from agents.config import load_config
from agents.evaluation import evaluate_heldout, format_table, heldout_set
from agents.learner import Learner
from agents.policy import build_policy
from agents.rollout import Rollout
from cuma_env import vote_metrics


def main(steps: int = 40, n_per_level: int = 50) -> dict:
    config = load_config(preset="tiny-cuma-gated",
                         overrides=[f"train.steps={steps}", f"eval.n_per_level={n_per_level}"])
    seed_everything(config.seed)
    policy = build_policy(config.model, config.rollout)      # tiny base + TorchRL TransformersWrapper(s)
    rollout = Rollout(config, policy)                        # CuMa TorchRL env + curriculum + LLMCollector + GroupVote
    learner = Learner(policy, config.train, config.rollout.group_size)  # GRPOLoss + AdamW + warm-up/cosine
    heldout = heldout_set(config)                            # the arith test split's first n_per_level per level

    before = evaluate_heldout(policy, config, heldout)       # the config's eval settings, as `cuma train`'s
    print(format_table(before, "held-out before:"))
    trained = []
    for step in range(1, config.train.steps + 1):
        batch = rollout.collect()                            # 16 prompts x 8 responses, voted, masked groups dropped
        stats = learner.step(batch.data)                     # one GRPO step on the groups that carry a gradient
        trained.append(stats.trained_groups)
        if step % 10 == 0 or step == config.train.steps:
            votes = vote_metrics(batch.infos)                # the metrics.csv columns of `cuma train`
            print(f"step {step}: agreement {votes['agreement']:.2f}, masked {votes['mask_rate']:.2f}, trained groups "
                  f"{stats.trained_groups}, level {rollout.summary()['level']}")
    after = evaluate_heldout(policy, config, heldout)
    print(format_table(after, "held-out after:"))
    rollout.shutdown()
    return {"before": before, "after": after, "trained_groups": trained, "level": rollout.summary()["level"]}


if __name__ == "__main__":
    main(*map(int, sys.argv[1:2]))
