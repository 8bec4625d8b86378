"""Turn a raw row into a Problem, or a Reject that names the field and the reason.

Text fields are repaired first (LaTeX whose escapes were decoded as control characters, see escapes.py):
a repaired row is kept and its Problem lists the repairs; text that is still binary after repair is rejected.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from curriculum.data.escapes import repair_escapes, unrepairable
from curriculum.data.extract import extract_answer
from curriculum.data.readers import RawRow, Reject
from curriculum.data.records import Problem
from curriculum.data.sources import FieldMap

RESERVED = {"id", "problem", "answer", "source"}


@dataclass(frozen=True)
class Limits:
    """Bounds a problem must respect to be kept (a 200 KB problem is a data bug, not a hard problem)."""

    max_problem_chars: int = 20_000
    max_answer_chars: int = 1_000


def _control_fraction(text: str) -> float:
    bad = sum(1 for char in text if unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn") and char not in "\n\t\r")
    return bad / max(1, len(text))


def _text_field(row: RawRow, field: str, label: str, limit: int) -> tuple[str, list[str]] | Reject:
    """The field's text, repaired and stripped, with the commands repaired; or why the row is rejected."""
    if field not in row.data or row.data[field] is None:
        return Reject(row.file, row.line, f"missing {label}", field=field)
    value = row.data[field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return Reject(row.file, row.line, f"{label} is a {type(value).__name__}, not text", field=field)
    # Repair before strip: str.strip() would eat a form feed or tab that opens the text ("\x0crac{1}{2}").
    text, repaired = repair_escapes(str(value))
    text = text.strip()
    if not text:
        return Reject(row.file, row.line, f"empty {label}", field=field)
    left = unrepairable(text)
    if "\x00" in text or left is not None or _control_fraction(text) > 0.01:
        at = 0 if left is None else text.index(left)
        detail = "" if left is None else f" ({left!r} at character {at}: not a known LaTeX command)"
        return Reject(row.file, row.line, f"{label} contains binary/control characters{detail}", field=field,
                      excerpt=repr(text[max(0, at - 30):at + 30]))
    if len(text) > limit:
        return Reject(row.file, row.line, f"{label} too long: {len(text):,} characters (limit {limit:,})",
                      field=field, excerpt=text[:60])
    return text, repaired


def to_problem(row: RawRow, fields: FieldMap, source: str, keep_columns: tuple[str, ...] = (),
               limits: Limits = Limits()) -> Problem | Reject:
    """Validate and normalize one raw row; the answer is extracted with the source's rule."""
    checked = _text_field(row, fields.problem, "problem", limits.max_problem_chars)
    if isinstance(checked, Reject):
        return checked
    problem, repairs = checked[0], {fields.problem: checked[1]}
    # The answer is repaired before extraction: a damaged `\boxed` ("\x08oxed{5}") would hide the answer.
    checked = _text_field(row, fields.answer, "answer", max(limits.max_answer_chars, limits.max_problem_chars))
    if isinstance(checked, Reject):
        return checked
    raw_answer, repairs[fields.answer] = checked
    answer = extract_answer(raw_answer, fields.answer_rule)
    if not answer:
        return Reject(row.file, row.line, f"no answer found by rule {fields.answer_rule!r}", field=fields.answer,
                      excerpt=raw_answer[-80:])
    if len(answer) > limits.max_answer_chars:
        return Reject(row.file, row.line, f"answer too long: {len(answer):,} characters", field=fields.answer)
    wanted = keep_columns or tuple(key for key in row.data if key not in (fields.problem, fields.answer))
    extra = {}
    for key in wanted:
        if key in row.data and key not in RESERVED:
            extra[key] = _scalar(row.data[key])
            if isinstance(extra[key], str):  # a kept solution column gets the same repair as the answer
                extra[key], repairs[key] = repair_escapes(extra[key])
    if "source" in row.data and fields.problem != "source":
        extra["upstream"] = _scalar(row.data["source"])  # provenance string kept beside our source name
    repairs = {key: commands for key, commands in repairs.items() if commands}
    return Problem(problem=problem, answer=answer, source=source, extra=extra, file=row.file, line=row.line,
                   repairs=repairs)


def _scalar(value):
    """Parquet wants one type per column: lists and dicts are kept as JSON text."""
    import json

    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value
