"""The CuMa agent in a few lines of API: TorchRL collector + group vote + GRPO on the embedded tiny base.

    OMP_NUM_THREADS=1 python examples/train_tiny.py          # ~1 min on a laptop CPU

`cuma train` does the same with checkpoints, evaluation, CSV metrics and the report; this is the bare loop.
"""

import statistics

from agents.config import load_config
from agents.evaluation import bench_problems, evaluate, format_table
from agents.learner import Learner
from agents.policy import build_policy
from agents.rollout import Rollout
from agents.checkpoint import seed_everything

config = load_config(preset="tiny-cuma-gated", overrides=["train.steps=40"])
seed_everything(config.seed)
policy = build_policy(config.model, config.rollout)       # tiny base + TorchRL TransformersWrapper(s)
rollout = Rollout(config, policy)                         # CuMa TorchRL env + curriculum + LLMCollector + GroupVote
learner = Learner(policy, config.train, config.rollout.group_size)  # GRPOLoss + AdamW + warm-up/cosine
problems, template = bench_problems("arith", n_per_level=50)

print(format_table(evaluate(policy, problems, template, max_new_tokens=8), "held-out before:"))
for step in range(1, config.train.steps + 1):
    batch = rollout.collect()                             # 16 prompts x 8 responses, voted, masked groups dropped
    stats = learner.step(batch.data)                      # one GRPO step on the groups that carry a gradient
    if step % 10 == 0:
        agreement = statistics.fmean(i["agreement"] for i in batch.infos)
        masked = statistics.fmean(i["masked"] for i in batch.infos)
        print(f"step {step}: agreement {agreement:.2f}, masked {masked:.2f}, trained groups {stats.trained_groups}, "
              f"level {rollout.summary()['level']}")
print(format_table(evaluate(policy, problems, template, max_new_tokens=8), "held-out after:"))
rollout.shutdown()
