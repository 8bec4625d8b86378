"""`data prepare`: sources -> one validated, deduplicated, decontaminated problems parquet + rejects file."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from curriculum.data.decontaminate import ContaminationIndex
from curriculum.data.dedup import Deduplicator
from curriculum.data.loaders import BENCHMARKS, iter_source, load_benchmark, resolve_source
from curriculum.data.readers import Reject
from curriculum.data.records import PROBLEM_COLUMNS, Problem
from curriculum.data.sources import SourceError
from curriculum.data.validate import Limits


@dataclass
class PrepareOptions:
    decontaminate: tuple[str, ...] = tuple(BENCHMARKS)  # benchmark names to decontaminate against
    ngram: int = 8
    threshold: float = 0.8
    limit_per_source: int | None = None
    synth_n: int | None = None
    synth_seed: int | None = None
    limits: Limits = field(default_factory=Limits)


@dataclass
class SourceSummary:
    source: str
    read: int = 0
    invalid: int = 0
    duplicate: int = 0
    contaminated: int = 0
    kept: int = 0


@dataclass
class PrepareResult:
    out: Path
    rejects_path: Path
    summaries: list[SourceSummary]
    reject_reasons: Counter
    decontaminated_against: list[str]
    skipped_eval_sets: dict[str, str]

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.summaries)

    @property
    def rejected(self) -> int:
        return sum(s.invalid + s.duplicate + s.contaminated for s in self.summaries)


def rejects_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".rejects.jsonl")


def build_contamination_index(names, data_dir, exclude: set[str], options: PrepareOptions):
    index = ContaminationIndex(n=options.ngram, threshold=options.threshold)
    used, skipped = [], {}
    for name in names:
        if name not in BENCHMARKS:
            raise SourceError(f"unknown evaluation set {name!r} for decontamination; known: {', '.join(BENCHMARKS)}")
        if BENCHMARKS[name] in exclude:
            continue
        try:
            frame = load_benchmark(name, data_dir)
        except SourceError as error:
            skipped[name] = str(error)
            continue
        index.add(frame["problem"].tolist(), name)
        used.append(name)
    return index, used, skipped


def prepare(sources: list[str], out: str | Path, *, data_dir=None, options: PrepareOptions | None = None,
            progress=None) -> PrepareResult:
    """Load every source, keep valid first copies of problems not seen in evaluation sets, write parquet."""
    import pandas as pd

    options = options or PrepareOptions()
    out = Path(out)
    configs = [resolve_source(spec) for spec in sources]
    index, used, skipped = build_contamination_index(
        options.decontaminate, data_dir, {config.name for config in configs}, options)
    dedup = Deduplicator()
    rows, rejects, summaries = [], [], []
    for config in configs:
        summary = SourceSummary(config.name)
        summaries.append(summary)
        for item in iter_source(config, data_dir_option=data_dir, limits=options.limits,
                                synth_n=options.synth_n, synth_seed=options.synth_seed):
            if options.limit_per_source is not None and summary.kept >= options.limit_per_source:
                break
            summary.read += 1
            if progress is not None:
                progress(1)
            if isinstance(item, Reject):
                summary.invalid += 1
                rejects.append(item.to_dict() | {"source": config.name})
                continue
            where = f"{item.file or config.name}:{item.line or summary.read}"
            first = dedup.check(item.problem, where)
            if first is not None:
                summary.duplicate += 1
                rejects.append(_reject(item, config.name, where, f"duplicate of {first}", "problem"))
                continue
            overlap = index.match(item.problem) if len(index) else None
            if overlap is not None:
                summary.contaminated += 1
                rejects.append(_reject(item, config.name, where, f"contaminated: overlaps {overlap}", "problem"))
                continue
            summary.kept += 1
            rows.append(item.to_row())
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=None if rows else list(PROBLEM_COLUMNS))
    _atomic_parquet(frame, out)
    rejects_path = rejects_path_for(out)
    _atomic_text(rejects_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    reasons = Counter(_reason_kind(r["reason"]) for r in rejects)
    return PrepareResult(out, rejects_path, summaries, reasons, used, skipped)


def _reject(problem: Problem, source: str, where: str, reason: str, field_name: str) -> dict:
    return {"file": problem.file or source, "line": problem.line, "reason": reason, "field": field_name,
            "excerpt": problem.problem[:120], "source": source, "id": problem.id}


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split(" of ")[0].split(" (")[0]


def _atomic_parquet(frame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
