"""What a scoring run is: its settings, its shard of the problems, the columns it writes, and the problems
file it reads (checked through `curriculum.contracts`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from curriculum import contracts
from curriculum.contracts import read_table
from curriculum.prompts import DEFAULT_TEMPLATE, PromptTemplate
from curriculum.rollout.base import Sampling
from curriculum.stats import INTERVAL_METHODS

SCORE_COLUMNS: tuple[str, ...] = (
    "id", "n", "k", "pass_rate", "ci_low", "ci_high", "mean_tokens", "truncated_frac", "model", "engine", "sampling",
)
#: Extra column: samples whose verdict was neither right nor wrong (timeout, error, gold not parseable).
EXTRA_COLUMNS: tuple[str, ...] = ("unverified",)
COMPLETION_COLUMNS: tuple[str, ...] = (
    "id", "sample", "text", "num_tokens", "finish_reason", "status", "predicted", "correct",
)
DEFAULT_EDGES: tuple[float, ...] = (0.8, 0.5, 0.2)
METADATA_KEY = b"curriculum.score"
#: Keys of a recipe's `score:` section that build its Sampling, besides ScoreConfig's own fields.
RECIPE_SAMPLING_KEYS: tuple[str, ...] = ("temperature", "top_p", "max_tokens", "seed")
#: Keys of a recipe's `score:` section that say what scoring runs with (the pipeline's), not how it scores.
RECIPE_RUN_KEYS: tuple[str, ...] = ("engine", "engine_options", "keep_completions")
_PART_PREFIX = "part-"


class ScoringError(ValueError):
    """Bad input, a mismatched resume or an inconsistent merge: one line that names the file and field."""



# --------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ScoreConfig:
    """How to score. Fixed mode draws `samples` per problem; adaptive mode draws rounds of `samples` up to
    `max_samples` and stops a problem once its `stop_confidence` interval lies inside one band of `edges`.

    `confidence` is the level of the interval written to the scores file; the stopping rule has its own,
    lower level because it only has to pick the band, not bound the rate (see reports/bench_score.md).
    """

    samples: int = 16
    adaptive: bool = False
    max_samples: int = 64
    edges: tuple[float, ...] = DEFAULT_EDGES
    interval: str = "wilson"
    confidence: float = 0.95
    stop_confidence: float = 0.8
    sampling: Sampling = field(default_factory=Sampling)
    chunk_size: int | None = None  # None: about a tenth of the problems, between 8 and 64 (see chunk_size_for)
    extraction: str = "auto"
    verify_timeout_s: float = 5.0
    template: PromptTemplate = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ScoringError(f"samples must be at least 1, got {self.samples}")
        if self.adaptive and self.max_samples < self.samples:
            raise ScoringError(f"max_samples ({self.max_samples}) must be at least samples ({self.samples})")
        if self.interval not in INTERVAL_METHODS:
            raise ScoringError(f"unknown interval {self.interval!r}; expected one of {', '.join(INTERVAL_METHODS)}")
        for name in ("confidence", "stop_confidence"):
            if not 0 < getattr(self, name) < 1:
                raise ScoringError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise ScoringError(f"chunk_size must be at least 1, got {self.chunk_size}")
        if self.sampling.max_tokens < 1:
            raise ScoringError(f"max_tokens must be at least 1, got {self.sampling.max_tokens}")
        edges = tuple(sorted({float(edge) for edge in self.edges}, reverse=True))
        if not edges or any(not 0 < edge < 1 for edge in edges):
            raise ScoringError(f"edges must be numbers strictly between 0 and 1, got {list(self.edges)}")
        object.__setattr__(self, "edges", edges)

    @classmethod
    def from_recipe(cls, section: dict, template: PromptTemplate | None = None) -> ScoreConfig:
        """A pipeline's `score:` section (and the recipe's prompt template), checked: errors start with the key.

        The sampling keys (temperature, top_p, max_tokens, seed) build the Sampling; the run keys (engine,
        engine_options, keep_completions) are left to the caller.

        >>> ScoreConfig.from_recipe({"samples": "8", "temperature": 0.6, "engine": "hf"}).sampling.temperature
        0.6
        """
        from curriculum.recipe import check_fields

        values = {key: value for key, value in section.items() if key not in RECIPE_RUN_KEYS}
        try:
            sampling = Sampling(**check_fields(Sampling, {key: values.pop(key) for key in RECIPE_SAMPLING_KEYS
                                                          if key in values}, error=ScoringError))
            values = check_fields(cls, values, error=ScoringError)
            if "edges" in values:
                values["edges"] = tuple(values["edges"])
            if template is not None:
                values["template"] = template
            return cls(sampling=sampling, **values)
        except TypeError as error:  # a value of a type the fields cannot take (edges: 0.5)
            raise ScoringError(str(error)) from error

    @classmethod
    def recipe_keys(cls) -> list[str]:
        """Every key a recipe's `score:` section may set."""
        fields = [name for name in cls.__dataclass_fields__ if name not in ("sampling", "template")]
        return [*fields, *RECIPE_SAMPLING_KEYS, *RECIPE_RUN_KEYS]

    @property
    def budget(self) -> int:
        """The most rollouts one problem can get."""
        return self.max_samples if self.adaptive else self.samples

    def chunk_size_for(self, problems: int) -> int:
        """Problems per written chunk: the configured size, else ~10 chunks per run (8 to 64 problems each),
        so that small CPU runs show progress and lose little to a kill while large runs keep big batches."""
        if self.chunk_size is not None:
            return self.chunk_size
        return max(8, min(64, -(-problems // 10)))

    def identity(self) -> dict:
        """What a resumed run or a shard to merge must share with this one."""
        return {
            "samples": self.samples,
            "adaptive": self.adaptive,
            "max_samples": self.budget,
            "edges": list(self.edges) if self.adaptive else None,
            "stop_confidence": self.stop_confidence if self.adaptive else None,
            "interval": self.interval,
            "confidence": self.confidence,
            "sampling": self.sampling.to_dict(),
            "extraction": self.extraction,
            "template": {"system": self.template.system, "instruction": self.template.instruction},
        }


def parse_edges(text: str) -> tuple[float, ...]:
    """"0.8,0.5,0.2" -> (0.8, 0.5, 0.2), with a clear error for anything else."""
    try:
        edges = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ScoringError(f"edges must be comma-separated numbers such as 0.8,0.5,0.2, got {text!r}") from error
    if not edges or any(not 0 < edge < 1 for edge in edges):
        raise ScoringError(f"edges must be numbers strictly between 0 and 1, got {text!r}")
    return edges


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): the problems whose id hashes to index mod count."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ScoringError(f"shard must be i/N with 0 <= i < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, _, count = text.partition("/")
        try:
            index_number, count_number = int(index), int(count)
        except ValueError:
            raise ScoringError(f"shard must look like i/N (e.g. 0/4), got {text!r}") from None
        return cls(index_number, count_number)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def mask(self, ids: Sequence[str]) -> np.ndarray:
        """Which ids belong to this shard; depends only on each id, never on row order or file."""
        return np.array([_id_hash(str(i)) % self.count == self.index for i in ids], dtype=bool)


def _id_hash(problem_id: str) -> int:
    return int.from_bytes(hashlib.sha1(problem_id.encode()).digest()[:8], "big")


# --------------------------------------------------------------------------------------------------------
# input


def load_problems(path: str | Path) -> pd.DataFrame:
    """Read and check a problems parquet (or .jsonl): id, problem and answer present, non-empty, ids unique."""
    frame = read_table(path, "problems", error=ScoringError)
    validate_problems(frame, path)
    return frame.reset_index(drop=True)


def validate_problems(frame: pd.DataFrame, path: str | Path = "problems") -> None:
    """`curriculum.contracts.validate_problems`, reported as a ScoringError."""
    contracts.validate_problems(frame, path, error=ScoringError)


def problems_fingerprint(ids: Sequence[str]) -> str:
    """A digest of the set of problem ids, so a resume or a merge can tell it is looking at the same set."""
    digest = hashlib.sha256()
    for problem_id in sorted(str(i) for i in ids):
        digest.update(problem_id.encode() + b"\n")
    return digest.hexdigest()[:16]
