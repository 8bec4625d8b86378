"""Reward functions for TRL's GRPO trainer, found by name and weighted from a spec string.

Every reward is a picklable callable object with TRL's signature, `f(prompts, completions, **kwargs) ->
list[float | None]`, and a `__name__` (TRL logs `rewards/<name>/mean`). Completions may be plain strings or
conversational (a list of message dicts); the gold answer arrives as the dataset column `answer` and the
token ids of each completion as `completion_ids` (TRL passes both in kwargs).

Correctness comes from `curriculum.verify.check_batch`, whose cache makes `accuracy` and `cosine` share one
verification per (completion, gold). `None` means "skip this example" (an unparseable gold answer): never a
free 1.0. Where TRL's own helpers are right they are wrapped (`think_format_reward`, the repetition penalty).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from curriculum.verify import DEFAULT_TIMEOUT_S, Verdict, check_batch, parse_extraction

RewardFunc = Callable[..., list[float | None]]
REWARDS: dict[str, type[Reward]] = {}


def register(name: str):
    """Class decorator: make a reward findable by `get_reward(name)`."""

    def decorate(cls):
        cls.name = name
        REWARDS[name] = cls
        return cls

    return decorate


def get_reward(name: str, **options: Any) -> RewardFunc:
    """The TRL-compatible reward callable registered under `name`, configured by `options`."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; available: {', '.join(sorted(REWARDS))}")
    try:
        return REWARDS[name](**options)
    except TypeError as error:  # unknown keyword: name the accepted ones
        raise ValueError(f"reward {name!r}: {error}; accepted options: {', '.join(reward_options(name))}") from error


def reward_options(name: str) -> list[str]:
    """The keyword options a reward accepts."""
    return [p for p in inspect.signature(REWARDS[name].__init__).parameters if p != "self"]


def parse_reward_spec(
    spec: str | Mapping[str, float], options: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[RewardFunc], list[float]]:
    """`"accuracy:1,format:1,cosine:2"` -> (reward callables, weights) for `GRPOTrainer` / `GRPOConfig`.

    A missing weight means 1. `options` maps a reward name to its keyword options; options for a reward that
    the spec does not use are ignored (a trainer may always pass the cosine length scale), but an option key
    that names no reward at all is an error, so a typo cannot silently drop a setting.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(REWARDS))
    if unknown:
        raise ValueError(f"options for unknown reward(s) {unknown}; available: {', '.join(sorted(REWARDS))}")
    if isinstance(spec, Mapping):
        items = [(str(name), weight) for name, weight in spec.items()]
    else:
        items = []
        for part in (p.strip() for p in str(spec).split(",")):
            if not part:
                continue
            name, _, weight = part.partition(":")
            items.append((name.strip(), weight.strip() or 1.0))
    if not items:
        raise ValueError("empty reward spec; expected e.g. 'accuracy:1,format:1'")
    funcs, weights, seen = [], [], set()
    for name, weight in items:
        if name in seen:
            raise ValueError(f"reward {name!r} appears twice in the spec")
        seen.add(name)
        try:
            weights.append(float(weight))
        except (TypeError, ValueError):
            raise ValueError(f"reward {name!r}: weight {weight!r} is not a number") from None
        funcs.append(get_reward(name, **dict(options.get(name) or {})))
    return funcs, weights


# --------------------------------------------------------------------------------------------------------
# Helpers shared by the rewards


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The text of a completion: a plain string, or the assistant messages of a conversational one."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if not isinstance(content, str):  # content blocks: [{"type": "text", "text": ...}, ...]
            content = "".join(block.get("text", "") for block in content if isinstance(block, Mapping))
        parts.append(content)
    return "\n".join(parts)


def cosine_scaled(
    length: int,
    correct: bool,
    max_len: int,
    *,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
) -> float:
    """The length-aware reward of "Demystifying Long Chain-of-Thought Reasoning" (arXiv 2502.03373, C.1).

    Progress `length / max_len` is clamped to [0, 1] (cos is periodic: unclamped, the reward would climb back
    up past `max_len`). Correct answers go from `max_value_correct` at length 0 down to `min_value_correct`
    at `max_len`; wrong ones from `min_value_wrong` up to `max_value_wrong`, so that a long wrong answer
    (still exploring) is penalised less than a short one. Same formula as `trl.rewards.get_cosine_scaled_reward`,
    whose callable verifies correctness on its own; here correctness comes from the shared verifier.
    """
    progress = min(max(length / max_len, 0.0), 1.0)
    cosine = math.cos(progress * math.pi)
    if correct:
        start, end = max_value_correct, min_value_correct
    else:
        start, end = min_value_wrong, max_value_wrong
    return float(end + 0.5 * (start - end) * (1.0 + cosine))


class Reward:
    """Base of the registered rewards: picklable (TRL may ship reward functions to a worker process)."""

    name = "reward"

    def __init__(self) -> None:
        self.__name__ = self.name

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__name__")
        return f"{type(self).__name__}({options})"


class _NeedsTokens:
    """Token lengths/ids of completions: TRL's `completion_ids`, else the `tokenizer` option."""

    tokenizer: Any = None

    def _load_tokenizer(self):
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        return self.tokenizer

    def token_ids(self, texts: list[str], kwargs: Mapping[str, Any]) -> list[list[int]]:
        ids = kwargs.get("completion_ids")
        if ids is not None:
            if len(ids) != len(texts):
                raise ValueError(f"{self.name}: got {len(ids)} completion_ids for {len(texts)} completions")
            return [list(x) for x in ids]
        if self.tokenizer is None:
            raise ValueError(
                f"reward {self.name!r} needs token counts: pass completion_ids (TRL's GRPOTrainer does) or "
                "give the reward a tokenizer option"
            )
        tokenizer = self._load_tokenizer()
        return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


class _NeedsVerdicts:
    """Correctness from the shared, cached verifier; golds from the dataset column `answer_key`."""

    extraction: str | Mapping[str, str] = "auto"
    timeout_s: float = DEFAULT_TIMEOUT_S
    answer_key: str = "answer"
    workers: int | None = None

    def _check_verify_options(self) -> None:
        rules = [self.extraction] if isinstance(self.extraction, str) else list(self.extraction.values())
        for rule in rules:
            parse_extraction(rule)
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")

    def verdicts(self, texts: list[str], kwargs: Mapping[str, Any]) -> list[Verdict]:
        if self.answer_key not in kwargs:
            columns = sorted(k for k in kwargs if k not in ("trainer_state", "log_extra", "log_metric"))
            raise ValueError(
                f"reward {self.name!r} needs the gold answer in the dataset column {self.answer_key!r}; "
                f"the reward got columns {columns}"
            )
        golds = ["" if gold is None else str(gold) for gold in kwargs[self.answer_key]]
        if len(golds) != len(texts):
            raise ValueError(f"{self.name}: got {len(golds)} gold answers for {len(texts)} completions")
        if isinstance(self.extraction, str):
            rules: str | list[str] = self.extraction
        else:  # per source: {"gsm8k": "last_number", "default": "auto"} with a dataset column `source`
            default = self.extraction.get("default", "auto")
            sources = kwargs.get("source") or [None] * len(texts)
            rules = [self.extraction.get(source, default) for source in sources]
        return check_batch(texts, golds, extraction=rules, timeout_s=self.timeout_s, workers=self.workers)


# --------------------------------------------------------------------------------------------------------
# The rewards


@register("accuracy")
class Accuracy(Reward, _NeedsVerdicts):
    """1.0 if the completion's final answer equals the gold answer (math-verify, gold first), else 0.0;
    None when the gold answer cannot be parsed, so the example is skipped rather than rewarded."""

    def __init__(
        self,
        *,
        extraction: str | Mapping[str, str] = "auto",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        answer_key: str = "answer",
        workers: int | None = None,
    ) -> None:
        super().__init__()
        self.extraction, self.timeout_s, self.answer_key, self.workers = extraction, timeout_s, answer_key, workers
        self._check_verify_options()

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        verdicts = self.verdicts([completion_text(c) for c in completions], kwargs)
        if kwargs.get("log_extra") is not None:  # columns of TRL's completions table
            kwargs["log_extra"]("predicted", [v.predicted if v.predicted is not None else "" for v in verdicts])
            kwargs["log_extra"]("verdict", [v.status for v in verdicts])
        if kwargs.get("log_metric") is not None and verdicts:
            for status in ("no_answer", "timeout", "unparseable_gold", "error"):
                share = sum(v.status == status for v in verdicts) / len(verdicts)
                kwargs["log_metric"](f"verify/{status}_frac", share)
        return [v.reward for v in verdicts]


@register("cosine")
class Cosine(Reward, _NeedsVerdicts, _NeedsTokens):
    """Correctness scaled by completion length in tokens (see `cosine_scaled`); None for an unparseable gold.

    With `truncation_penalty` set, a completion of at least `truncation_len` tokens (default `max_len`, i.e.
    one cut off by the generation limit) gets that reward instead, whatever its answer.
    """

    def __init__(
        self,
        *,
        max_len: int | None = None,
        min_value_wrong: float = -1.0,
        max_value_wrong: float = -0.5,
        min_value_correct: float = 0.5,
        max_value_correct: float = 1.0,
        truncation_penalty: float | None = None,
        truncation_len: int | None = None,
        tokenizer: Any = None,
        extraction: str | Mapping[str, str] = "auto",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        answer_key: str = "answer",
        workers: int | None = None,
    ) -> None:
        super().__init__()
        if max_len is None or int(max_len) <= 0:
            raise ValueError(f"cosine needs max_len, the length scale in tokens (> 0), got {max_len!r}")
        if not min_value_correct <= max_value_correct:
            raise ValueError("cosine: min_value_correct must be <= max_value_correct")
        if not min_value_wrong <= max_value_wrong:
            raise ValueError(
                "cosine: min_value_wrong (reward of a short wrong answer) must be <= max_value_wrong (a long one), "
                "so that a long wrong answer is penalised less than a short one"
            )
        if max_value_wrong > min_value_correct:
            raise ValueError("cosine: a wrong answer (max_value_wrong) must never beat a correct one (min_value_correct)")
        self.max_len = int(max_len)
        self.values = {
            "min_value_wrong": float(min_value_wrong),
            "max_value_wrong": float(max_value_wrong),
            "min_value_correct": float(min_value_correct),
            "max_value_correct": float(max_value_correct),
        }
        self.truncation_penalty = truncation_penalty
        self.truncation_len = int(truncation_len or max_len)
        self.tokenizer = tokenizer
        self.extraction, self.timeout_s, self.answer_key, self.workers = extraction, timeout_s, answer_key, workers
        self._check_verify_options()

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        lengths = [len(ids) for ids in self.token_ids(texts, kwargs)]
        rewards: list[float | None] = []
        for verdict, length in zip(self.verdicts(texts, kwargs), lengths, strict=True):
            if verdict.reward is None:
                rewards.append(None)
            elif self.truncation_penalty is not None and length >= self.truncation_len:
                rewards.append(float(self.truncation_penalty))
            else:
                rewards.append(cosine_scaled(length, verdict.correct, self.max_len, **self.values))
        return rewards


_ANSWER_AFTER_THINK = re.compile(r"\s*<answer>((?:(?!</?answer>|</?think>).)*)</answer>\s*", re.DOTALL)


@register("format")
class Format(Reward):
    """1.0 for `<think>...</think><answer>...</answer>` and nothing else around, else 0.0.

    The think part is TRL's `think_format_reward`; with `prefilled_think=True` (chat templates that end the
    prompt with `<think>`, as DeepSeek-R1-Distill's does) the completion is checked as if it started with that
    tag. The prompt must ask for these tags (`curriculum.prompts`, template `think-answer`); training warns
    at start-up when it does not (`tags` is what that check reads).

    >>> Format()(completions=["<think>2 + 2 = 4</think> <answer>4</answer>", "The answer is 4."])
    [1.0, 0.0]
    >>> Format(prefilled_think=True)(completions=["2 + 2 = 4</think><answer>4</answer>"])
    [1.0]
    """

    tags = ("<think>", "</think>", "<answer>", "</answer>")

    def __init__(self, *, prefilled_think: bool = False) -> None:
        super().__init__()
        self.prefilled_think = bool(prefilled_think)

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        from trl.rewards import think_format_reward

        texts = [completion_text(c) for c in completions]
        if self.prefilled_think:
            texts = ["<think>" + text for text in texts]
        think_ok = think_format_reward([[{"role": "assistant", "content": text}] for text in texts])
        rewards: list[float | None] = []
        for text, ok in zip(texts, think_ok, strict=True):
            after = text.split("</think>", 1)[1] if ok else ""
            rewards.append(1.0 if ok and _ANSWER_AFTER_THINK.fullmatch(after) else 0.0)
        return rewards


@register("tag_count")
class TagCount(Reward):
    """0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` present exactly once (open-r1's
    partial-credit shaping that teaches the format before it is fully right)."""

    TAGS = ("<think>", "</think>", "<answer>", "</answer>")
    tags = TAGS

    def __init__(self, *, prefilled_think: bool = False) -> None:
        super().__init__()
        self.prefilled_think = bool(prefilled_think)

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        rewards: list[float | None] = []
        for completion in completions:
            text = completion_text(completion)
            if self.prefilled_think:
                text = "<think>" + text
            rewards.append(0.25 * sum(text.count(tag) == 1 for tag in self.TAGS))
        return rewards


@register("repetition")
class Repetition(Reward, _NeedsTokens):
    """A penalty in [max_penalty, 0] for repeated n-grams: TRL's `get_repetition_penalty_reward` over token
    ids (`unit="tokens"`), or over lower-cased words as open-r1 does (`unit="words"`)."""

    def __init__(
        self, *, ngram_size: int = 3, max_penalty: float = -1.0, unit: str = "tokens", tokenizer: Any = None
    ) -> None:
        super().__init__()
        from trl.rewards import get_repetition_penalty_reward

        if unit not in ("tokens", "words"):
            raise ValueError(f"repetition: unit must be 'tokens' or 'words', got {unit!r}")
        if int(ngram_size) < 1:
            raise ValueError(f"repetition: ngram_size must be >= 1, got {ngram_size}")
        self.ngram_size, self.max_penalty, self.unit, self.tokenizer = int(ngram_size), max_penalty, unit, tokenizer
        self._penalty = get_repetition_penalty_reward(ngram_size=self.ngram_size, max_penalty=max_penalty)

    def __call__(self, prompts=None, completions=None, **kwargs) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        if self.unit == "tokens":
            ids = self.token_ids(texts, kwargs)
        else:
            vocabulary: dict[str, int] = {}
            ids = [[vocabulary.setdefault(word, len(vocabulary)) for word in text.lower().split()] for text in texts]
        return list(self._penalty(completion_ids=ids))


__all__ = [
    "REWARDS", "Accuracy", "Cosine", "Format", "Repetition", "Reward", "RewardFunc", "TagCount", "completion_text",
    "cosine_scaled", "get_reward", "parse_reward_spec", "register", "reward_options",
]
