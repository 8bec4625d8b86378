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
from curriculum.data.synthetic import Knobs
from curriculum.data.validate import Limits
from curriculum.layout import rejects_path_for, repairs_path_for  # noqa: F401 - re-exported (data.prepare's side files)


@dataclass
class PrepareOptions:
    """How `prepare` reads its sources.

    `limit_per_source` keeps at most N problems of every source (an int) or of the sources named in a
    mapping (`{"gsm8k": 40}`: a source name or the spec as given); `synth_n`, `synth_seed` and `synth_knobs`
    set the synthetic generator (see `curriculum.data.synthetic.Knobs`).
    """

    decontaminate: tuple[str, ...] = tuple(BENCHMARKS)  # benchmark names to decontaminate against
    ngram: int = 8
    threshold: float = 0.8
    limit_per_source: int | dict[str, int] | None = None
    synth_n: int | None = None
    synth_seed: int | None = None
    synth_knobs: Knobs | None = None
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.decontaminate) - set(BENCHMARKS))
        if unknown:
            raise SourceError(f"eval_sets: unknown evaluation set {unknown[0]!r} for decontamination; known: "
                              f"{', '.join(BENCHMARKS)}")
        limits = self.limit_per_source
        values = limits.values() if isinstance(limits, dict) else [] if limits is None else [limits]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            raise SourceError(f"limit: expected a number of problems per source, or a mapping source: number, "
                              f"got {limits!r}")
        if self.synth_n is not None and (isinstance(self.synth_n, bool) or not isinstance(self.synth_n, int)
                                         or self.synth_n < 0):
            raise SourceError(f"synth.n: expected a number of problems, got {self.synth_n!r}")

    @classmethod
    def from_recipe(cls, section: dict) -> PrepareOptions:
        """A pipeline's `data:` section (eval_sets, limit, ngram, overlap, synth: {n, seed, knobs...}).

        >>> PrepareOptions.from_recipe({"synth": {"n": 10, "digits": [1]}, "limit": {"gsm8k": 40}}).synth_knobs.digits
        (1,)
        """
        synth = dict(section.get("synth") or {})
        n, seed = synth.pop("n", None), synth.pop("seed", None)
        knob_names = list(Knobs.__dataclass_fields__)
        unknown = sorted(set(synth) - set(knob_names))
        if unknown:
            raise SourceError(f"synth: unknown knob(s) {unknown}; expected n, seed, {', '.join(knob_names)}")
        try:
            knobs = Knobs(**{key: tuple(v) if isinstance(v, list) else v for key, v in synth.items()}) if synth else None
        except (TypeError, ValueError) as error:
            raise SourceError(f"synth: {error}") from error
        values = {"synth_n": n, "synth_seed": seed, "synth_knobs": knobs,
                  "limit_per_source": section.get("limit")}
        if "eval_sets" in section:
            values["decontaminate"] = tuple(section["eval_sets"])
        if "ngram" in section:
            values["ngram"] = section["ngram"]
        if "overlap" in section:
            values["threshold"] = section["overlap"]
        return cls(**values)

    def limit_for(self, spec: str, name: str) -> int | None:
        """The most problems to keep of one source (`spec` as given, `name` its config's name)."""
        if isinstance(self.limit_per_source, dict):
            for key in (spec, name, Path(spec).stem):
                if key in self.limit_per_source:
                    return int(self.limit_per_source[key])
            return None
        return self.limit_per_source


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

    def summary(self) -> str:
        """One line: problems kept, per source."""
        return f"{self.kept} problems ({', '.join(f'{s.source}: {s.kept}' for s in self.summaries if s.kept)})"


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
    for spec, config in zip(sources, configs, strict=True):
        summary = SourceSummary(config.name)
        summaries.append(summary)
        limit = options.limit_for(spec, config.name)
        for item in iter_source(config, data_dir_option=data_dir, limits=options.limits,
                                synth_n=options.synth_n, synth_seed=options.synth_seed, knobs=options.synth_knobs):
            if limit is not None and summary.kept >= limit:
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
