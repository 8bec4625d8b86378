"""The Problem record every stage exchanges, its text normalization and its stable id."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from curriculum import contracts

#: What `data prepare` writes first: the contract's columns, then the source.
PROBLEM_COLUMNS = (*contracts.PROBLEM_COLUMNS, "source")

# LaTeX spacing and sizing commands that change how a problem looks but not what it asks.
_LATEX_NOISE = re.compile(r"\\(?:[,;:! ]|(?:quad|qquad|left|right|displaystyle|textstyle)(?![a-zA-Z]))")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower-case, drop LaTeX spacing commands, unify \\dfrac/\\tfrac, collapse whitespace.

    Two problems with the same normalized text are the same problem (near duplicates).
    """
    text = _LATEX_NOISE.sub(" ", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("~", " ")
    text = text.replace("$", " ")
    return _WHITESPACE.sub(" ", text).strip().lower()


def problem_id(problem: str, source: str) -> str:
    """Stable id: a hash of the normalized problem text and its source name."""
    digest = hashlib.sha256(f"{source}\x1f{normalize_text(problem)}".encode()).hexdigest()
    return digest[:16]


@dataclass
class Problem:
    """One math problem: `answer` is the gold answer string the verifier compares against."""

    problem: str
    answer: str
    source: str
    extra: dict = field(default_factory=dict)
    file: str | None = field(default=None, compare=False)  # where it was read from, for error messages
    line: int | None = field(default=None, compare=False)
    repairs: dict = field(default_factory=dict, compare=False)  # raw field -> LaTeX commands repaired on read

    @property
    def id(self) -> str:
        return problem_id(self.problem, self.source)

    def to_row(self) -> dict:
        row = {"id": self.id, "problem": self.problem, "answer": self.answer, "source": self.source}
        for key, value in self.extra.items():
            row.setdefault(key, value)
        return row
