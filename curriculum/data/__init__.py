"""The problem data layer: sources, loading, validation, dedup, decontamination, synthetic problems."""

from curriculum.data.loaders import BENCHMARKS, load_benchmark, load_problems, resolve_source
from curriculum.data.prepare import PrepareOptions, PrepareResult, prepare
from curriculum.data.readers import Reject
from curriculum.data.records import PROBLEM_COLUMNS, Problem, normalize_text, problem_id
from curriculum.data.sources import SourceConfig, SourceError
from curriculum.data.synthetic import generate as generate_synthetic

__all__ = [
    "BENCHMARKS", "PROBLEM_COLUMNS", "PrepareOptions", "PrepareResult", "Problem", "Reject", "SourceConfig",
    "SourceError", "generate_synthetic", "load_benchmark", "load_problems", "normalize_text", "prepare",
    "problem_id", "resolve_source",
]
