"""`data prepare`: sources -> one validated, deduplicated, decontaminated problems parquet + rejects file.

Beside `<name>.parquet` go `<name>.rejects.jsonl` (one line per row not kept: file, line, field, reason) and
`<name>.repairs.jsonl` (one line per field whose LaTeX escape damage was repaired on read, `kind: "repaired"`:
file, line, field, commands). A repaired row is read like any other; it may still be a duplicate.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from curriculum.contracts import atomic_write_parquet, atomic_write_text
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
    repaired: int = 0  # rows read with LaTeX escape damage repaired (any fate: kept, duplicate, ...)
    repaired_fields: int = 0


@dataclass
class PrepareResult:
    out: Path
    rejects_path: Path
    summaries: list[SourceSummary]
    reject_reasons: Counter
    decontaminated_against: list[str]
    skipped_eval_sets: dict[str, str]
    repairs_path: Path | None = None
    repaired_commands: Counter = field(default_factory=Counter)  # LaTeX command -> times repaired

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.summaries)

    @property
    def rejected(self) -> int:
        return sum(s.invalid + s.duplicate + s.contaminated for s in self.summaries)

    @property
    def repaired(self) -> int:
        return sum(s.repaired for s in self.summaries)

    @property
    def repaired_fields(self) -> int:
        return sum(s.repaired_fields for s in self.summaries)


def rejects_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".rejects.jsonl")


def repairs_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".parquet") + ".repairs.jsonl")


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
    rows, rejects, repairs, summaries = [], [], [], []
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
            if item.repairs:
                summary.repaired += 1
                summary.repaired_fields += len(item.repairs)
                repairs.extend(_repair_notes(item, config.name))
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
    atomic_write_parquet(frame, out)
    rejects_path = rejects_path_for(out)
    atomic_write_text(rejects_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects))
    repairs_path = repairs_path_for(out)
    atomic_write_text(repairs_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in repairs))
    reasons = Counter(_reason_kind(r["reason"]) for r in rejects)
    commands = Counter(name for note in repairs for name in note["commands"])
    return PrepareResult(out, rejects_path, summaries, reasons, used, skipped, repairs_path, commands)


def _repair_notes(problem: Problem, source: str) -> list[dict]:
    """One note per repaired field: which LaTeX commands were restored, and where."""
    return [{"kind": "repaired", "file": problem.file or source, "line": problem.line, "field": field_name,
             "commands": commands, "source": source, "id": problem.id}
            for field_name, commands in problem.repairs.items()]


def _reject(problem: Problem, source: str, where: str, reason: str, field_name: str) -> dict:
    return {"file": problem.file or source, "line": problem.line, "reason": reason, "field": field_name,
            "excerpt": problem.problem[:120], "source": source, "id": problem.id}


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split(" of ")[0].split(" (")[0]
