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
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), with nested braces; `\\boxed 5` too."""
    matches = list(_BOXED.finditer(text))
    for match in reversed(matches):
        start = match.end()
        if start < len(text) and text[start] == "{":
            content = _balanced(text, start)
            if content is not None:
                return content.strip()
        elif start < len(text):
            # `\boxed 5`: the argument runs to the next whitespace or `$`.
            token = re.match(r"[^\s$]+", text[start:])
            if token:
                return token.group(0)
    return None


def _balanced(text: str, open_index: int) -> str | None:
    depth = 0
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "{}":
            continue
        if char == "{" and (index == 0 or text[index - 1] != "\\"):
            depth += 1
        elif char == "}" and (index == 0 or text[index - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
    return None


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
