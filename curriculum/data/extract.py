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
    spans = boxed_spans(text)
    return spans[-1][2] if spans else None


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """Every complete `\\boxed{...}` / `\\fbox{...}` / `\\boxed 5` in order, as (start, end, content).

    Linear time (one pass to match braces); an unclosed box is skipped.
    """
    matches = list(_BOXED.finditer(text))
    if not matches:
        return []
    closing = _matching_braces(text)
    spans = []
    for match in matches:
        start = match.end()
        if start < len(text) and text[start] == "{":
            end = closing.get(start)
            if end is not None:
                spans.append((match.start(), end + 1, text[start + 1 : end].strip()))
        elif start < len(text):
            # `\boxed 5`: the argument runs to the next whitespace or `$`.
            token = re.match(r"[^\s${}]+", text[start:])
            if token:
                spans.append((match.start(), start + token.end(), token.group(0)))
    # A box nested in another box belongs to the outer one.
    outer = []
    for span in spans:
        if outer and span[0] < outer[-1][1]:
            continue
        outer.append(span)
    return outer


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
