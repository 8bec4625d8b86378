"""What a completion commits to, and whether that equals the gold answer (math-verify underneath).

This is the worker side of verification: `judge` runs inside `curriculum.verify`'s bounded processes and
never outside them (math-verify can take unbounded time on adversarial text).

Extraction tries explicit answer markers first, in this order for `extraction="auto"`:

    answer_tag   <answer>…</answer>                  (the last one)
    boxed        \\boxed{…} / \\fbox{…}                (the last one, together with the boxes right before it
                                                     that only separators divide: `\\boxed{1}, \\boxed{2}`)
    answer_is    "the answer is …", "Answer: …", GSM8K's "#### …"
    math_verify  math-verify's own extraction of the whole text (its LaTeX and expression targets)
    last_number  a number standing alone at the very end of the text (`…\\n\\n42` or `… = 42.`)

A marker's text is handed to math-verify to read; the first source whose text parses decides. The number
fallback is deliberately narrow: a number inside a word (`AZYUK2A`), a LaTeX expression (`\\frac{10}{9}`) or
an interval (`$[0,1)$`) is never taken for an answer, because that both misreads right answers and rewards
completions that merely end in digits.

Both sides are read the same way: a string with no math delimiters is tried as LaTeX first (MATH's gold
answers are bare LaTeX), then as plain text (where math-verify reads `1 000`, `1000,99` or `.4` as numbers).
Both sides are also repaired of JSON escape damage (`\\x0crac` -> `\\frac`), the same damage on both sides
then still compares equal.
"""

from __future__ import annotations

import re
from collections import OrderedDict

#: Answer sources, tried in this order by `extraction="auto"`.
EXTRACTORS: tuple[str, ...] = ("answer_tag", "boxed", "answer_is", "math_verify", "last_number")

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_IS = re.compile(r"(?:final\s+)?answer\s*(?:is|:)\s*:?", re.IGNORECASE)
_DELIMITERS = re.compile(r"\$|\\\(|\\\[|\\boxed|\\fbox|\\begin\{(?:equation|align)")
#: What may stand between two boxes of one answer: whitespace, commas, "and"/"or", math delimiters,
#: spacing commands and a short \text{…} such as `\text{ and }`.
_BOX_SEPARATOR = re.compile(
    r"(?:\s|[,;&]|\$|\\[()\[\]]|\\q?quad|\\[,;:! ]|\band\b|\bor\b|\\text\{[^{}]{0,40}\}"
    r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*"  # `\boxed{a} \quad y_2 = \boxed{b}`
)
#: A number with a thousands space (`1 000`), which LaTeX reads as a product. (A comma stays LaTeX's to read:
#: real gold answers such as `-2,1` or `0,1` are lists of solutions, not decimal commas.)
_PLAIN_NUMBER = re.compile(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?")
#: Two words in a row once LaTeX commands are gone: prose, which math-verify reads better than LaTeX does.
_PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+(?:\{[^{}]*\})?")
#: A number standing alone at the end: after the start, whitespace, `=` or `:`, before optional `.`/`!`.
_TAIL_NUMBER = re.compile(
    r"(?:^|(?<=[\s=:]))(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)\s*[.!]?\s*$"
)


def parse_extraction(extraction: str) -> tuple[str, ...]:
    """"auto" or a comma-separated chain of sources ("boxed,last_number") -> the sources in order.

    Example:
        >>> parse_extraction("boxed,answer_is")
        ('boxed', 'answer_is')
    """
    if extraction == "auto":
        return EXTRACTORS
    chain = tuple(part.strip() for part in extraction.split(",") if part.strip())
    unknown = [part for part in chain if part not in EXTRACTORS]
    if not chain or unknown:
        raise ValueError(
            f"unknown answer extraction {extraction!r}; expected 'auto' or a comma-separated chain of "
            f"{', '.join(EXTRACTORS)}"
        )
    return chain


def _strip_answer(text: str) -> str | None:
    text = text.strip().rstrip(".").strip()
    single_span = re.fullmatch(r"\$+([^$]+?)\$+\.?", text)  # "$\frac{1}{2}$" -> "\frac{1}{2}"
    if single_span:
        text = single_span.group(1).strip()
    return text or None


def _from_answer_tag(text: str) -> str | None:
    matches = _ANSWER_TAG.findall(text)
    return _strip_answer(matches[-1]) if matches else None


def _from_boxed(text: str) -> str | None:
    from curriculum.data.extract import boxed_spans

    spans = boxed_spans(text)
    if not spans:
        return None
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        between = text[span[1] : group[0][0]]
        if not _BOX_SEPARATOR.fullmatch(between):
            break
        group.insert(0, span)
    contents = [content for _, _, content in group if content]
    if not contents:
        return None
    return _strip_answer(", ".join(contents))


def _from_answer_is(text: str) -> str | None:
    from curriculum.data.extract import extract_gsm8k

    last = None
    for last in _ANSWER_IS.finditer(text):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return extract_gsm8k(text)
    line = text[last.end() :].lstrip().split("\n", 1)[0]
    # "…is $\frac{1}{2}$. I hope it is correct." -> the sentence that holds the answer.
    line = re.split(r"\.\s+(?=I hope|[A-Z])", line, maxsplit=1)[0]
    return _strip_answer(line)


def _from_last_number(text: str) -> str | None:
    match = _TAIL_NUMBER.search(text.rstrip())
    return match.group(1).replace(",", "") if match else None


_EXTRACT = {
    "answer_tag": _from_answer_tag,
    "boxed": _from_boxed,
    "answer_is": _from_answer_is,
    "last_number": _from_last_number,
}


def extract_answer(completion: str, extraction: str = "auto") -> str | None:
    r"""The answer text a completion commits to: the first candidate of the chain that finds one.

    `math_verify` yields a parsed value rather than a span of text, so it is skipped here; `judge` uses it.

    Example:
        >>> extract_answer("so x = 3, and the answer is $\\frac{1}{2}$.")
        '\\frac{1}{2}'
    """
    return next((text for source, text in candidates(completion, extraction) if source != "math_verify"), None)


_MARKERS = ("answer_tag", "boxed", "answer_is")


def candidates(completion: str, extraction: str):
    """(source, answer text) in the order they are tried; `math_verify` comes with text None.

    Answer markers next to each other in the chain (answer_tag, boxed, answer_is) are weighed by position:
    the one the completion states last comes first ("\\boxed{255} … The final answer is $10,455$.").
    """
    chain = list(parse_extraction(extraction))
    while chain:
        if chain[0] not in _MARKERS:
            source = chain.pop(0)
            if source == "math_verify":
                yield source, None
            else:
                text = _EXTRACT[source](completion)
                if text:
                    yield source, text
            continue
        found = []
        while chain and chain[0] in _MARKERS:
            source = chain.pop(0)
            text = _EXTRACT[source](completion)
            if text:
                found.append((_answer_end(source, completion), -len(found), source, text))
        for _, _, source, text in sorted(found, reverse=True):
            yield source, text


def _answer_end(source: str, completion: str) -> int:
    """Where a marker's answer ends in the completion (its last occurrence)."""
    if source == "boxed":
        return completion.rfind("box")
    if source == "answer_tag":
        return completion.lower().rfind("</answer>")
    found = max(completion.rfind("####"), *(m.end() for m in _ANSWER_IS.finditer(completion)), -1)
    return found


# --------------------------------------------------------------------------------------------------------
# Reading and comparing with math-verify (worker side)

_GOLD_CACHE: OrderedDict[str, list] = OrderedDict()


def parse_math(text: str) -> list:
    """math-verify's reading of an answer string (a gold answer, or the text an answer marker holds).

    Bare math is read as LaTeX first (MATH's golds are bare LaTeX: `\\frac{1}{2}`, `3, 5`); plain numbers
    that LaTeX misreads (`1 000`) and prose (`Jane is 3 years old`) go to math-verify's own
    extraction directly. Returns math-verify's list ([value, matched text]) or [] when nothing parses.
    """
    from math_verify import parse

    text = text.strip()
    if not text:
        return []
    # parsing_timeout=None: math-verify's own timeout is signal.alarm; the pool's deadline bounds us instead.
    bare = text.removesuffix(".").strip()
    if not _DELIMITERS.search(text) and not _PLAIN_NUMBER.fullmatch(bare) and not _PROSE.search(
        _LATEX_COMMAND.sub(" ", text)
    ):
        as_latex = parse(f"${bare}$", parsing_timeout=None)
        if as_latex:
            return as_latex
    return parse(text, parsing_timeout=None)


def parse_gold(gold: str) -> list:
    """The gold answer read by math-verify, with escape damage repaired first (cached per process)."""
    if gold in _GOLD_CACHE:
        _GOLD_CACHE.move_to_end(gold)
        return _GOLD_CACHE[gold]
    parsed = parse_math(repair_control_escapes(gold))
    _GOLD_CACHE[gold] = parsed
    if len(_GOLD_CACHE) > 4096:
        _GOLD_CACHE.popitem(last=False)
    return parsed


def repair_control_escapes(text: str) -> str:
    """`curriculum.data.escapes.repair_escapes` without the tab and newline cases.

    At verification time a tab or a newline is ordinary whitespace in a completion or an answer; only the
    characters that never belong in math text (form feed, backspace, bell, vertical tab, a carriage
    return before a command) are taken for damage.
    """
    from curriculum.data.escapes import repair_escapes

    if not any(char in text for char in "\x07\x08\x0b\x0c\x0d"):
        return text
    pieces = re.split(r"([\t\n])", text)
    return "".join(piece if piece in ("\t", "\n") else repair_escapes(piece)[0] for piece in pieces)


def read_prediction(completion: str, extraction: str) -> tuple[list, str | None]:
    """(math-verify's reading, the answer text) from the first candidate whose text parses.

    A candidate that does not parse gives way to the next; if none parses, the first text found comes back
    with an empty reading (a "wrong" answer, not "no answer").
    """
    from math_verify import parse

    first_text = None
    for source, text in candidates(completion, extraction):
        if source == "math_verify":
            parsed = parse(completion, parsing_timeout=None)
            if parsed:
                return parsed, str(parsed[-1])
            continue
        first_text = first_text or text
        parsed = parse_math(text)
        if parsed:
            return parsed, text
    return [], first_text


def judge(completion: str, gold: str, extraction: str) -> tuple[str, str | None, str]:
    """(status, predicted, detail) for one pair, with no time bound: only call it inside a verify worker."""
    from math_verify import verify

    try:
        gold_parsed = parse_gold(gold)
        if not gold_parsed:
            # Checked before the completion so that a whole GRPO group is skipped consistently.
            return "unparseable_gold", None, f"math-verify cannot parse gold answer {gold[:80]!r}"
        predicted_parsed, predicted = read_prediction(repair_control_escapes(completion), extraction)
        if not predicted_parsed:
            return ("no_answer", None, "") if predicted is None else ("wrong", predicted, "prediction does not parse")
        same = verify(gold_parsed, predicted_parsed, timeout_seconds=None)
        return ("correct" if same else "wrong"), predicted, ""
    except Exception as error:  # a verifier bug must cost one sample, not the training run
        return "error", None, f"{type(error).__name__}: {str(error)[:200]}"


__all__ = ["EXTRACTORS", "extract_answer", "judge", "parse_extraction", "parse_gold", "parse_math", "read_prediction"]
