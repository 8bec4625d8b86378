"""Turn a raw row into a Problem, or a Reject that names the field and the reason."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

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


def _text_field(row: RawRow, field: str, label: str, limit: int) -> str | Reject:
    if field not in row.data or row.data[field] is None:
        return Reject(row.file, row.line, f"missing {label}", field=field)
    value = row.data[field]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return Reject(row.file, row.line, f"{label} is a {type(value).__name__}, not text", field=field)
    text = str(value).strip()
    if not text:
        return Reject(row.file, row.line, f"empty {label}", field=field)
    if "\x00" in text or _control_fraction(text) > 0.01:
        return Reject(row.file, row.line, f"{label} contains binary/control characters", field=field,
                      excerpt=repr(text[:60]))
    if len(text) > limit:
        return Reject(row.file, row.line, f"{label} too long: {len(text):,} characters (limit {limit:,})",
                      field=field, excerpt=text[:60])
    return text


def to_problem(row: RawRow, fields: FieldMap, source: str, keep_columns: tuple[str, ...] = (),
               limits: Limits = Limits()) -> Problem | Reject:
    """Validate and normalize one raw row; the answer is extracted with the source's rule."""
    problem = _text_field(row, fields.problem, "problem", limits.max_problem_chars)
    if isinstance(problem, Reject):
        return problem
    raw_answer = _text_field(row, fields.answer, "answer", max(limits.max_answer_chars, limits.max_problem_chars))
    if isinstance(raw_answer, Reject):
        return raw_answer
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
    if "source" in row.data and fields.problem != "source":
        extra["upstream"] = _scalar(row.data["source"])  # provenance string kept beside our source name
    return Problem(problem=problem, answer=answer, source=source, extra=extra, file=row.file, line=row.line)


def _scalar(value):
    """Parquet wants one type per column: lists and dicts are kept as JSON text."""
    import json

    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value
