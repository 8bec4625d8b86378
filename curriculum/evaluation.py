"""Benchmark evaluation: avg@k with an interval over problems, pass@k and majority vote, per bucket.

One fixed harness (the training prompt template, the training verifier, seeded sampling, benchmarks in
file order) so numbers from different runs can be compared. Single samples of 30 problems move by 15-20
points between neighbouring checkpoints; we average k samples per problem and report how uncertain the
average still is. Samples of one problem are correlated, so the interval is a bootstrap over *problems*
(each resampled problem brings all its k samples), not a binomial over all samples, which would be too
narrow.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from curriculum.data.loaders import BENCHMARKS as BENCHMARK_SOURCES
from curriculum.layout import (  # noqa: F401 - re-exported for the eval command and compare
    HELDOUT,
    journal_path_for,
    samples_path_for,
)
from curriculum.prompts import DEFAULT_TEMPLATE, PromptTemplate
from curriculum.stats import (  # noqa: F401 - re-exported: evaluation's numbers are built from these
    DEFAULT_RESAMPLES,
    Interval,
    bootstrap_interval,
    clustered_interval,
    majority_vote,
    normalize_answer,
    paired_bootstrap_difference,
    pass_at_k,
    pass_k_values,
)

BENCHMARKS = tuple(BENCHMARK_SOURCES)  # one list: curriculum.data.loaders maps each name to its source config


class EvaluationError(ValueError):
    """Bad evaluation input (unknown benchmark, missing file or column): one clear message for the CLI."""


def summarize(
    correct: np.ndarray, predicted: Sequence[Sequence[str | None]], *, confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> dict:
    """Metrics of one problem set from a (problems x k) boolean matrix and the extracted answers."""
    correct = np.asarray(correct, dtype=bool)
    problems, k = correct.shape
    counts = correct.sum(axis=1)
    rates = counts / k if k else np.zeros(problems)
    avg = bootstrap_interval(rates, confidence=confidence, resamples=resamples, seed=seed)
    clustered = clustered_interval(counts, k, confidence=confidence) if k else None
    result: dict = {
        "n_problems": int(problems),
        "k": int(k),
        "n_samples": int(problems * k),
        "n_correct": int(counts.sum()),
        "avg_at_k": avg.to_dict(),
        "avg_at_k_clustered_normal": clustered.to_dict() if clustered else None,
        "pass_at_k": {},
    }
    for j in pass_k_values(k) if problems and k else []:
        per_problem = [pass_at_k(k, int(c), j) for c in counts]
        result["pass_at_k"][str(j)] = bootstrap_interval(
            per_problem, confidence=confidence, resamples=resamples, seed=seed
        ).to_dict()
    if k > 1 and problems:
        votes = [majority_vote(p, c) for p, c in zip(predicted, correct.tolist(), strict=True)]
        result["maj_at_k"] = bootstrap_interval(
            np.asarray(votes, dtype=float), confidence=confidence, resamples=resamples, seed=seed
        ).to_dict()
    return result


# --------------------------------------------------------------------------------------------------
# problem sets


def default_data_dir() -> Path | None:
    """$CURRICULUM_DATA_DIR, else the shared data directory beside the repository when present, else None (hub);
    the one resolver is `curriculum.data.sources.data_dir`."""
    from curriculum.data.sources import data_dir

    return data_dir()


def load_eval_set(name: str, *, data_dir: str | Path | None = None, limit: int | None = None):
    """A benchmark by name (aime24, amc23, math500, gsm8k, minerva, olympiadbench) or a problems file.

    Returns a DataFrame with `id`, `problem`, `answer` (and `bucket` when the file has one), the first
    `limit` rows in file order, so the same slice is evaluated every time.
    """
    import pandas as pd

    path = Path(name)
    if name not in BENCHMARKS and path.suffix in {".parquet", ".jsonl", ".json"}:
        if not path.is_file():
            raise EvaluationError(f"benchmark file {path} does not exist")
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=path.suffix == ".jsonl")
        label = path.stem
    elif name in BENCHMARKS:
        frame = _load_benchmark(name, data_dir)
        label = name
    else:
        raise EvaluationError(
            f"unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)} or a .parquet/.jsonl problems file"
        )
    return _check_problems(frame, label, limit)


def load_heldout(buckets_dir: str | Path, *, split: str | None = None, limit: int | None = None):
    """The problems of a buckets dataset (`curriculum build` output) with their `bucket` column.

    A DatasetDict uses `split` (default: `test` when present); a plain Dataset is used whole.
    """
    from datasets import DatasetDict, load_from_disk

    buckets_dir = Path(buckets_dir)
    if not buckets_dir.exists():
        raise EvaluationError(f"buckets directory {buckets_dir} does not exist")
    dataset = load_from_disk(str(buckets_dir))
    if isinstance(dataset, DatasetDict):
        chosen = split or ("test" if "test" in dataset else None)
        if chosen not in dataset:
            raise EvaluationError(
                f"{buckets_dir} has splits {sorted(dataset)}; choose one with --buckets-split"
            )
        dataset = dataset[chosen]
    elif split:
        raise EvaluationError(f"{buckets_dir} is a single dataset without splits; drop --buckets-split {split}")
    frame = dataset.to_pandas()
    if "bucket" not in frame.columns:
        raise EvaluationError(f"{buckets_dir} has no `bucket` column; is it a `curriculum build` output?")
    return _check_problems(frame, str(buckets_dir), limit)


def _label(name: str) -> str:
    """What a benchmark is called in results: its name, or a problems file's stem."""
    name = split_benchmark_limit(name)[0]
    return name if name in BENCHMARKS else Path(name).stem


def split_benchmark_limit(name: str) -> tuple[str, int | None]:
    """`gsm8k:100` -> ("gsm8k", 100): a benchmark's own limit, which wins over the settings' `limit`, so one
    evaluation can take a slice of a large benchmark and the whole of a small held-out file.

    Example:
        >>> split_benchmark_limit("gsm8k:100"), split_benchmark_limit("runs/x/heldout.parquet")
        (('gsm8k', 100), ('runs/x/heldout.parquet', None))
    """
    base, colon, count = name.rpartition(":")
    if colon and base and count.isdigit():
        if int(count) < 1:
            raise EvaluationError(f"{name}: a benchmark's limit must be at least 1")
        return base, int(count)
    return name, None


def _load_benchmark(name: str, data_dir: str | Path | None):
    from curriculum.data import load_benchmark

    try:
        return load_benchmark(name, data_dir=data_dir or default_data_dir())
    except (OSError, ValueError) as error:
        raise EvaluationError(f"cannot load benchmark {name!r}: {error}") from error


def _check_problems(frame, label: str, limit: int | None):
    missing = {"problem", "answer"} - set(frame.columns)
    if missing:
        raise EvaluationError(f"{label}: missing column(s) {sorted(missing)}")
    frame = frame.reset_index(drop=True)
    if "id" not in frame.columns:
        frame["id"] = [f"{Path(label).stem}-{i}" for i in range(len(frame))]
    if limit is not None:
        if limit < 1:
            raise EvaluationError(f"--limit must be at least 1, got {limit}")
        frame = frame.head(limit)
    for row, value in enumerate(frame["answer"]):
        if value is None or str(value).strip() == "":
            raise EvaluationError(f"{label}: row {row} (id {frame['id'][row]}) has an empty answer")
    frame["id"] = frame["id"].astype(str)
    frame["answer"] = frame["answer"].astype(str)
    return frame


# --------------------------------------------------------------------------------------------------
# the harness


@dataclass(frozen=True)
class EvalSettings:
    """Everything that defines the numbers: written into the JSON so runs can be compared."""

    samples: int = 4
    limit: int | None = None  # the first N problems of each benchmark; a held-out split is always evaluated whole
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int = 0
    confidence: float = 0.95
    resamples: int = DEFAULT_RESAMPLES
    chunk_size: int = 32
    extraction: str = "auto"  # the training reward's rule; e.g. "boxed" to credit only a final \boxed{}

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise EvaluationError(f"samples must be at least 1, got {self.samples}")
        if self.samples > 1 and self.temperature <= 0:
            raise EvaluationError("samples > 1 with temperature 0 would repeat one greedy answer; raise temperature")
        if self.max_tokens < 1:
            raise EvaluationError(f"max_tokens must be at least 1, got {self.max_tokens}")
        from curriculum.verify import parse_extraction

        try:
            parse_extraction(self.extraction)
        except ValueError as error:
            raise EvaluationError(str(error)) from error
        if self.chunk_size < 1:
            raise EvaluationError(f"chunk_size must be at least 1, got {self.chunk_size}")
        if not 0 < self.confidence < 1:
            raise EvaluationError(f"confidence must be in (0, 1), got {self.confidence}")

    @classmethod
    def from_recipe(cls, section: dict) -> EvalSettings:
        """The EvalSettings keys of a pipeline's `eval:` section, checked: errors start with the key."""
        from curriculum.recipe import check_fields

        names = set(cls.__dataclass_fields__)
        return cls(**check_fields(cls, {k: v for k, v in section.items() if k in names}, error=EvaluationError))


def evaluate(
    model: str,
    benchmarks: Sequence[str] = ("gsm8k",),
    *,
    settings: EvalSettings = EvalSettings(),
    engine: str = "hf",
    engine_options: dict | None = None,
    buckets: str | Path | None = None,
    buckets_split: str | None = None,
    data_dir: str | Path | None = None,
    template: PromptTemplate = DEFAULT_TEMPLATE,
    samples_path: str | Path | None = None,
    journal_path: str | Path | None = None,
    on_benchmark: Callable[[str, int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Evaluate `model` on `benchmarks` (and the held-out split of `buckets`, per bucket); return the JSON dict.

    Every benchmark is generated with the same Sampling (seeded) and checked with `curriculum.verify`, the
    verifier the training reward uses. `samples_path`, when given, receives one JSON line per completion.
    `journal_path`, when given, keeps every finished chunk (`curriculum.eval_journal`): an evaluation killed
    half-way and started again with the same arguments resumes there, with the same numbers.
    `on_benchmark(name, n_problems)` is called before each set and `on_progress(problems_done)` after each
    chunk of problems (the CLI draws a progress bar from them).
    """
    from curriculum.models import resolve_model
    from curriculum.rollout.base import Sampling

    sets = _eval_sets(benchmarks, buckets, buckets_split=buckets_split, data_dir=data_dir, limit=settings.limit)
    sampling = Sampling(
        temperature=settings.temperature, top_p=settings.top_p, max_tokens=settings.max_tokens, seed=settings.seed
    )
    from curriculum.rollout import get_engine

    started = time.perf_counter()
    model_dir = resolve_model(model)
    runner = get_engine(engine, model_dir, **(engine_options or {}))
    dtype = str(getattr(runner, "dtype", "") or "").removeprefix("torch.") or None  # hf picks it per machine
    record = _run_record(model, engine, engine_options, dtype, sampling, settings, template)
    record["engine_decoder"] = getattr(runner, "decoder", None)  # how the engine samples, when it says
    results: dict[str, dict] = {}
    sample_file = None
    try:
        journal = _open_journal(journal_path, record, model_dir, sets)
        sample_file = _open_samples(samples_path)
        for name, frame in sets.items():
            if on_benchmark:
                on_benchmark(name, len(frame))
            results[name] = _evaluate_set(runner, name, frame, sampling, settings, template, sample_file,
                                          on_progress, journal)
    finally:
        runner.close()
        if sample_file:
            sample_file.close()
    return {**record, "benchmarks": results, "timing": {"wall_s": round(time.perf_counter() - started, 2)}}


def _eval_sets(benchmarks: Sequence[str], buckets: str | Path | None, *, buckets_split: str | None,
               data_dir: str | Path | None, limit: int | None) -> dict:
    """Name -> problems frame of every set to evaluate: the benchmarks (distinct), then the held-out split."""
    sets = {}
    for spec in benchmarks:
        name, own_limit = split_benchmark_limit(spec)
        sets[_label(name)] = load_eval_set(name, data_dir=data_dir, limit=own_limit or limit)
    if len(sets) != len(benchmarks):
        raise EvaluationError(f"benchmarks must be distinct, got {list(benchmarks)}")
    if buckets is not None:
        sets[HELDOUT] = load_heldout(buckets, split=buckets_split)  # whole: its size is build's `heldout`
    if not sets:
        raise EvaluationError("nothing to evaluate: give --benchmarks and/or --buckets")
    return sets


def _run_record(model: str, engine: str, engine_options: dict | None, dtype: str | None, sampling,
                settings: EvalSettings, template: PromptTemplate) -> dict:
    """What an eval JSON states about how it was made (model, engine, sampling, k, template, interval), so two
    results can be checked for the same harness before they are compared."""
    from curriculum.models import model_label

    return {
        "model": model_label(model),
        "model_spec": model,
        "engine": engine,
        "engine_options": dict(engine_options or {}),
        "dtype": dtype,
        "sampling": sampling.to_dict(),
        "chunk_size": settings.chunk_size,
        "extraction": settings.extraction,
        "k": settings.samples,
        "limit": settings.limit,
        "seed": settings.seed,
        "template": {"system": template.system, "instruction": template.instruction},
        "interval": {
            "method": "percentile bootstrap over problems",
            "confidence": settings.confidence,
            "resamples": settings.resamples,
        },
    }


def chunk_seed(seed: int, benchmark: str, chunk: int) -> int:
    """The sampling seed of one chunk of one benchmark: fixed by (seed, benchmark, chunk), so a benchmark's
    numbers do not depend on which other benchmarks ran before it."""
    digest = hashlib.sha256(f"{seed}:{benchmark}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _open_journal(path: str | Path | None, record: dict, model_dir, sets: dict):
    """The journal of this evaluation's finished chunks, keyed by everything that decides its draws."""
    if path is None:
        return None
    from curriculum.eval_journal import EvalJournal, weights_identity

    key = {"record": record, "weights": weights_identity(model_dir),
           "problems": {name: frame["id"].tolist() for name, frame in sets.items()}}
    return EvalJournal(path, key)


def _evaluate_set(runner, name, frame, sampling, settings: EvalSettings, template, sample_file,
                  on_progress=None, journal=None) -> dict:
    from curriculum.rollout.base import RolloutError
    from curriculum.verify import check_batch

    prompts = [template.messages(problem) for problem in frame["problem"]]
    k = settings.samples
    completions = []
    for index, start in enumerate(range(0, len(prompts), settings.chunk_size)):
        chunk = prompts[start:start + settings.chunk_size]
        groups = journal.get(name, index) if journal else None
        if groups is None:
            groups = runner.generate(chunk, k, replace(sampling, seed=chunk_seed(settings.seed, name, index)))
            if len(groups) != len(chunk) or any(len(group) != k for group in groups):
                raise RolloutError(
                    f"engine returned {len(groups)} groups for {len(chunk)} prompts (expected {k} each)")
            if journal:
                journal.add(name, index, groups)
        completions.extend(groups)
        if on_progress:
            on_progress(len(completions))
    texts = [c.text for group in completions for c in group]
    golds = [answer for answer in frame["answer"] for _ in range(k)]
    verdicts = check_batch(texts, golds, extraction=settings.extraction)
    correct = np.array([v.correct for v in verdicts], dtype=bool).reshape(len(frame), k)
    predicted = [[v.predicted for v in verdicts[i * k:(i + 1) * k]] for i in range(len(frame))]
    tokens = np.array([c.num_tokens for group in completions for c in group], dtype=float)
    truncated = np.array([c.truncated for group in completions for c in group], dtype=bool)
    statuses = Counter(v.status for v in verdicts)

    seed = settings.seed
    result = summarize(correct, predicted, confidence=settings.confidence, resamples=settings.resamples, seed=seed)
    result["mean_tokens"] = float(tokens.mean()) if tokens.size else math.nan
    result["truncated_frac"] = float(truncated.mean()) if truncated.size else math.nan
    result["statuses"] = dict(sorted(statuses.items()))
    result["problems"] = {"id": frame["id"].tolist(), "correct": correct.sum(axis=1).astype(int).tolist()}
    if "bucket" in frame.columns:
        result["per_bucket"] = {}
        buckets = frame["bucket"].to_numpy()
        for bucket in sorted(set(buckets.tolist())):
            rows = np.flatnonzero(buckets == bucket)
            result["per_bucket"][str(bucket)] = summarize(
                correct[rows], [predicted[i] for i in rows], confidence=settings.confidence,
                resamples=settings.resamples, seed=seed,
            )
    if sample_file:
        for i, group in enumerate(completions):
            for j, completion in enumerate(group):
                verdict = verdicts[i * k + j]
                record = {
                    "benchmark": name, "id": frame["id"][i], "sample": j, "answer": frame["answer"][i],
                    "predicted": verdict.predicted, "status": verdict.status, "num_tokens": completion.num_tokens,
                    "finish_reason": completion.finish_reason, "text": completion.text,
                }
                sample_file.write(json.dumps(record, ensure_ascii=False) + "\n")
    return result


def _open_samples(path: str | Path | None):
    if path is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def write_eval(result: dict, out: str | Path) -> Path:
    """Write the eval JSON atomically (a crash never leaves a half file that looks complete), then delete the
    journal of its unfinished chunks, which the finished file replaces."""
    from curriculum.contracts import atomic_write_text

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2, allow_nan=True) + "\n")
    journal_path_for(out).unlink(missing_ok=True)
    return out


def read_eval(path: str | Path) -> dict:
    """Read an eval JSON written by `write_eval`, with one clear error when it is not one."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EvaluationError(f"cannot read eval results {path}: {error}") from error
    if not isinstance(result, dict) or "benchmarks" not in result:
        raise EvaluationError(f"{path} is not a `curriculum eval` result (no `benchmarks` field)")
    return result


def describe(result: dict, label: str = "") -> str:
    """One line of an eval result: avg@k with its interval per benchmark (`label` before each, e.g. "after").

    >>> describe({"k": 4, "benchmarks": {"gsm8k": {"avg_at_k": {"mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}}}}, "after")
    'after gsm8k avg@4 50.0 [40.0, 60.0]%'
    """
    from curriculum.stats import fmt_interval

    prefix = f"{label} " if label else ""
    return "; ".join(f"{prefix}{name} avg@{result.get('k')} {fmt_interval(metrics.get('avg_at_k'))}%"
                     for name, metrics in headline(result))


def headline(result: dict) -> list[tuple[str, dict]]:
    """(benchmark, metrics) pairs in file order: what the CLI prints and the report tabulates."""
    return list(result.get("benchmarks", {}).items())
