"""The prompt templates shared by scoring, building, training and evaluation.

Using the same words everywhere is what makes a pass rate measured at scoring time mean the same thing
at training and evaluation time. Two templates are named:

- `boxed` (the default): open-rs's system prompt without its tags, asking for reasoning and a final answer
  in \\boxed{}. What the `accuracy` and `cosine` rewards check.
- `think-answer`: open-rs's system prompt as it was (knoveleng/open-rs, recipes/grpo.yaml), which also asks
  for `<think> ... </think> <answer> ... </answer>`; what the `format` and `tag_count` rewards check. The
  user turn is the problem alone, as in open-rs.

A recipe names one (`prompt: think-answer`) or spells its own (`prompt: {system: ..., instruction: ...}`).
Rewards that check tags are only fair when the prompt asks for them: `asked_tags` reads which tags a prompt
names, and `prefilled_think` tells whether a chat template already opens the assistant turn with `<think>`
(DeepSeek-R1-Distill's does), so that the completion starts inside the think block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a math question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process and then provides the user with the answer. "
    "Put the final answer within \\boxed{}."
)
DEFAULT_INSTRUCTION = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
THINK_ANSWER_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer, and put your final answer within \\boxed{} . The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>. Note that respond by English, NOT use other languages."
)
THINK_TAGS = ("<think>", "</think>")
TAG_PATTERN = re.compile(r"</?[A-Za-z_][\w-]*>")


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
THINK_ANSWER_TEMPLATE = PromptTemplate(system=THINK_ANSWER_SYSTEM_PROMPT, instruction="{problem}")
TEMPLATES: dict[str, PromptTemplate] = {"boxed": DEFAULT_TEMPLATE, "think-answer": THINK_ANSWER_TEMPLATE}


def get_template(spec: str | Mapping[str, Any] | PromptTemplate | None) -> PromptTemplate:
    """A template from a recipe's `prompt:` value: a name in `TEMPLATES`, a {system, instruction} mapping,
    or None for the default.

    >>> get_template("think-answer").messages("What is 2 + 2?")[1]
    {'role': 'user', 'content': 'What is 2 + 2?'}
    """
    if spec is None:
        return DEFAULT_TEMPLATE
    if isinstance(spec, PromptTemplate):
        return spec
    if isinstance(spec, str):
        if spec not in TEMPLATES:
            raise ValueError(f"unknown prompt template {spec!r}; named templates: {', '.join(TEMPLATES)} "
                             "(or give a mapping with system and instruction)")
        return TEMPLATES[spec]
    if isinstance(spec, Mapping):
        return PromptTemplate.from_dict(dict(spec))
    raise ValueError(f"a prompt template is a name or a mapping, got {type(spec).__name__}")


def asked_tags(messages: Sequence[Mapping[str, Any]] | str) -> set[str]:
    """The tags (`<think>`, `</answer>`, ...) that a prompt's words name, so a reward can check it asks for them.

    >>> sorted(asked_tags(THINK_ANSWER_TEMPLATE.messages("1 + 1?")))
    ['</answer>', '</think>', '<answer>', '<think>']
    >>> asked_tags(DEFAULT_TEMPLATE.messages("1 + 1?"))
    set()
    """
    if isinstance(messages, str):
        text = messages
    else:
        text = "\n".join(str(message.get("content") or "") for message in messages)
    return set(TAG_PATTERN.findall(text))


def prefilled_think(tokenizer, messages: Sequence[Mapping[str, Any]] | None = None) -> bool:
    """Whether the tokenizer's chat template ends the rendered prompt (generation prompt included) with an
    opened `<think>`, as DeepSeek-R1-Distill's does: the completion then starts inside the think block."""
    messages = list(messages or DEFAULT_TEMPLATE.messages("1 + 1?"))
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return rendered.rstrip().endswith(THINK_TAGS[0])


class TemplateMismatch(ValueError):
    """A prompt template that differs from the one the data was made with."""


def template_from_record(record: Mapping[str, Any] | None) -> PromptTemplate | None:
    """The template written into a scores file's metadata or a buckets manifest (None if none was)."""
    if not record:
        return None
    return PromptTemplate(system=record.get("system"), instruction=record.get("instruction", DEFAULT_INSTRUCTION))


def agreed_template(given: PromptTemplate | None, recorded: PromptTemplate | None, *, where: str) -> PromptTemplate:
    """The template a stage uses: the one the data was made with, unless one is given; a given one that
    differs is refused, because a pass rate (or an accuracy) under one prompt says little about another.

    Example:
        >>> agreed_template(None, THINK_ANSWER_TEMPLATE, where="scores.parquet") == THINK_ANSWER_TEMPLATE
        True
    """
    if recorded is None:
        return given or DEFAULT_TEMPLATE
    if given is None or given == recorded:
        return recorded
    raise TemplateMismatch(
        f"{where} was made with the prompt template {_brief(recorded)}, but {_brief(given)} was given: "
        "rescore with the new prompt, or leave the prompt out to use the recorded one"
    )


def _brief(template: PromptTemplate) -> str:
    system = (template.system or "")[:40]
    return f"(system {system!r}{'...' if template.system and len(template.system) > 40 else ''}, " \
           f"instruction {template.instruction[:40]!r})"
