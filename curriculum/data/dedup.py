"""Exact and near duplicate removal: two problems are the same when their normalized text is."""

from __future__ import annotations

from curriculum.data.records import normalize_text


class Deduplicator:
    """Remembers every normalized problem seen; `first_seen` says where a duplicate was first met."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def check(self, problem: str, where: str) -> str | None:
        """None for a new problem (and remember it), else where its first copy was."""
        key = normalize_text(problem)
        if key in self._seen:
            return self._seen[key]
        self._seen[key] = where
        return None
