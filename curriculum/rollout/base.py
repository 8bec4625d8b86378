"""The one rollout protocol every engine implements: chat prompts in, n completions each out.

Scoring and evaluation depend only on this file, so `hf`, `vllm` and `openai` engines are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

Messages = list[dict[str, str]]
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class Sampling:
    """Sampling settings shared by all engines (written as JSON into score and eval files)."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    """One sampled completion: its text, its length in tokens, and why generation stopped."""

    text: str
    num_tokens: int
    finish_reason: FinishReason

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class RolloutEngine(Protocol):
    """generate(prompts, n, sampling) -> for each prompt, n completions (in prompt order)."""

    name: str

    def generate(self, prompts: Sequence[Messages], n: int, sampling: Sampling) -> list[list[Completion]]: ...

    def close(self) -> None: ...


class RolloutError(RuntimeError):
    """An engine that cannot start or cannot reach its server: one clear message for the CLI."""
