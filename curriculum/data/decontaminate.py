"""Decontamination: drop training problems whose word n-grams largely coincide with one evaluation problem.

A problem is contaminated when the Jaccard overlap of its set of word n-grams with the n-gram set of a single
evaluation problem reaches `threshold`. Words are runs of letters and digits after normalization, so LaTeX
spacing, `$` and punctuation do not hide a copy. Problems shorter than n words count as one n-gram (the whole
text). A plain "any shared 13-gram" rule flags hundreds of MATH problems that only share boilerplate
("Enter your answer in the form ..."), which is why we measure overlap per evaluation problem.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from curriculum.data.records import normalize_text

_WORD = re.compile(r"[a-z0-9]+")


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(normalize_text(text))
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[start : start + n]) for start in range(len(words) - n + 1)}


class ContaminationIndex:
    """N-grams of evaluation problems; `match(problem)` names the evaluation set a problem overlaps, or None."""

    def __init__(self, n: int = 8, threshold: float = 0.8) -> None:
        if n < 3:
            raise ValueError("n-gram size must be at least 3")
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.n, self.threshold = n, threshold
        self._postings: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self._sizes: list[int] = []
        self._labels: list[str] = []

    def add(self, problems: Iterable[str], label: str) -> ContaminationIndex:
        for text in problems:
            grams = ngrams(text, self.n)
            if not grams:
                continue
            index = len(self._sizes)
            self._sizes.append(len(grams))
            self._labels.append(label)
            for gram in grams:
                self._postings[gram].append(index)
        return self

    def match(self, problem: str) -> str | None:
        grams = ngrams(problem, self.n)
        shared: dict[int, int] = defaultdict(int)
        for gram in grams:
            for index in self._postings.get(gram, ()):
                shared[index] += 1
        for index, count in shared.items():
            jaccard = count / (len(grams) + self._sizes[index] - count)
            if jaccard >= self.threshold:
                return self._labels[index]
        return None

    def __len__(self) -> int:
        return len(self._sizes)
