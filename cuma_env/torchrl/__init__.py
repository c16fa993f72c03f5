"""The TorchRL face of a CuMa episode: an LLM env whose batch is the group, and the group-vote transform.

Importing this subpackage imports torch and torchrl; `cuma_env` itself never does.
"""
