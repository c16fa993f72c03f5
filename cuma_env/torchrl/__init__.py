"""The TorchRL face of a CuMa episode: an LLM env whose batch is the group, and the group-vote transform.

Modules (imports point down this list, never up; tests/test_torchrl_env.py checks it):
- `env`: `make_torchrl_env` / `CuMaTorchRLEnv` (also `cuma_env.make_torchrl_env`) and its `GroupScorer`.
- `episode`: `Episode`, the env's public state (`env.episode`): config, reward, stream, problems in flight.
- `group_vote`: `GroupVote`, the group vote on the replay-buffer write path (`env.group_vote()`).
- `fast_paths`: the subclasses of TorchRL internals that skip needless work (docs/torchrl-gotchas.md, 15-18).
- `layout`: where a batch keeps its responses and token statistics (shared by `env` and `group_vote`).
- `token_stats`: self-certainty from a policy's logits.

Importing this subpackage imports torch and torchrl; `cuma_env` itself never does.
"""
