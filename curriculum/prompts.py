"""The one prompt template shared by scoring, building, training and evaluation.

Using the same words everywhere is what makes a pass rate measured at scoring time mean the same thing
at training and evaluation time. The default follows open-rs: a system prompt that asks for reasoning and
a final answer in \\boxed{}.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a math question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process and then provides the user with the answer. "
    "Put the final answer within \\boxed{}."
)
DEFAULT_INSTRUCTION = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


@dataclass(frozen=True)
class PromptTemplate:
    """A system prompt (optional) and a user instruction with a `{problem}` placeholder."""

    system: str | None = DEFAULT_SYSTEM_PROMPT
    instruction: str = DEFAULT_INSTRUCTION

    def messages(self, problem: str) -> list[dict[str, str]]:
        """The conversational prompt TRL expects: a list of {"role", "content"} messages."""
        user = {"role": "user", "content": self.instruction.format(problem=problem)}
        if self.system:
            return [{"role": "system", "content": self.system}, user]
        return [user]

    @classmethod
    def from_dict(cls, config: dict | None) -> PromptTemplate:
        config = dict(config or {})
        unknown = set(config) - {"system", "instruction"}
        if unknown:
            raise ValueError(f"unknown prompt template keys: {sorted(unknown)} (expected system, instruction)")
        if "{problem}" not in config.get("instruction", "{problem}"):
            raise ValueError("prompt instruction must contain the placeholder {problem}")
        return cls(**config)


DEFAULT_TEMPLATE = PromptTemplate()
