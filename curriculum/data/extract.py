"""Gold-answer extraction rules for raw dataset fields (GSM8K `####`, MATH's last `\\boxed{}`)."""

from __future__ import annotations

import re

ANSWER_RULES = ("plain", "gsm8k", "boxed")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")


def extract_gsm8k(text: str) -> str | None:
    """`... #### 1,234` -> `1234` (thousands separators and a trailing period removed)."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip()
    answer = answer.replace(",", "").rstrip(".").strip()
    return answer or None


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces; `\\boxed 5` too.

    Linear time: brace pairs are matched in one pass, so text full of unclosed boxes cannot stall it.
    """
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    closing = _matching_braces(text)
    for match in reversed(matches):
        start = match.end()
        if start < len(text) and text[start] == "{":
            end = closing.get(start)
            if end is not None:
                return text[start + 1 : end].strip()
        elif start < len(text):
            # `\boxed 5`: the argument runs to the next whitespace or `$`.
            token = re.match(r"[^\s$]+", text[start:])
            if token:
                return token.group(0)
    return None


def _matching_braces(text: str) -> dict[int, int]:
    """Opening-brace index -> closing-brace index, ignoring escaped braces `\\{` and `\\}`."""
    pairs, stack = {}, []
    for index, char in enumerate(text):
        if char not in "{}" or (index and text[index - 1] == "\\"):
            continue
        if char == "{":
            stack.append(index)
        elif stack:
            pairs[stack.pop()] = index
    return pairs


def extract_answer(raw: str, rule: str) -> str | None:
    """Apply a named rule to a raw answer/solution field; None when the rule finds nothing."""
    if rule == "plain":
        answer = raw.strip()
        return answer or None
    if rule == "gsm8k":
        return extract_gsm8k(raw)
    if rule == "boxed":
        return last_boxed(raw)
    raise ValueError(f"unknown answer rule {rule!r}; expected one of {', '.join(ANSWER_RULES)}")
