"""Agents for CuMa gym: the TorchRL GRPO agent, the embedded tiny base model, evaluation and the `cuma` CLI.

The import name is shared with the `openai-agents` distribution's package: when it is installed too, a name
this package lacks (`from agents import Agent`) fails with one line naming both and the fix (`agents.name_clash`).
"""


def __getattr__(name: str):
    from agents.name_clash import missing_name

    raise missing_name(__name__, name)
