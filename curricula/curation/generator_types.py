"""What every curation generator speaks: chat messages in, a `Completion` out, and the errors it may raise.

Kept apart from the backends so that a backend module (e.g. the lazily loaded `hf_backend`) and the factory
in `backends` can both import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Messages = Sequence[Mapping[str, str]]


class GeneratorError(RuntimeError):
    """The generator failed (bad response, refused request, model error)."""


class GeneratorUnreachable(GeneratorError):
    """The endpoint could not be reached (connection refused, DNS, timeouts) after every retry."""


class GeneratorSpecError(ValueError):
    """A `--generator` spec that cannot be understood."""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings sent to every backend (defaults: temperature 0.8, top-p 0.95, 6144 new tokens)."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 6144

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_tokens < 1:
            raise ValueError("need temperature >= 0, 0 < top_p <= 1, max_tokens >= 1")


@dataclass(frozen=True)
class Completion:
    """A generator's answer: the text, why it stopped (`stop`, `length`, or None), and usage if known."""

    text: str
    finish_reason: str | None = None
    model: str | None = None
    usage: Mapping[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@runtime_checkable
class Generator(Protocol):
    name: str

    def generate(self, messages: Messages, *, seed: int | None = None) -> Completion: ...

    def describe(self) -> dict[str, Any]: ...


__all__ = ["Completion", "Generator", "GeneratorError", "GeneratorSpecError", "GeneratorUnreachable",
           "Messages", "SamplingParams"]
