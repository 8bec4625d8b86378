"""Where scores go: one parquet part per finished chunk (atomic), consolidated into the output at the end;
resume checks, metadata, and the merge of shards."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from curriculum import layout
from curriculum.contracts import atomic_write_bytes, atomic_write_parquet, read_table
from curriculum.scoring.config import (
    _PART_PREFIX,
    COMPLETION_COLUMNS,
    EXTRA_COLUMNS,
    METADATA_KEY,
    SCORE_COLUMNS,
    ScoringError,
    Shard,
    problems_fingerprint,
)

# --------------------------------------------------------------------------------------------------------
# storage: parts written atomically, consolidated at the end


class PartStore:
    """The `<out>.parts/` directory of an unfinished run: run.json plus one parquet part per finished chunk.

    A part's completions file (if any) is written before its scores file, and the scores file is the commit
    point: a completions file without its scores file is the debris of a kill and is deleted on resume.
    """

    def __init__(self, out: Path, run: dict, *, resume: bool, keep_completions: bool) -> None:
        self.out = out
        self.directory = parts_dir(out)
        self.run = run
        self.completions_out = completions_path(out) if keep_completions else None
        run_file = self.directory / "run.json"
        check_output(out, resume=resume)
        if self.directory.exists() and run_file.exists():
            _check_same_run(json.loads(run_file.read_text()), run, str(self.directory))
        elif resume and out.exists() and not self.directory.exists():
            _check_same_run(read_metadata(out), run, str(out))
        if not self.directory.exists() and not out.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
        if self.directory.exists():
            if not run_file.exists():
                atomic_write_bytes(run_file, json.dumps(run, indent=2, sort_keys=True).encode())
            self._clean_debris()

    def _score_parts(self) -> list[Path]:
        return sorted(p for p in self.directory.glob(f"{_PART_PREFIX}*.parquet")
                      if not p.name.endswith(".completions.parquet"))

    def _clean_debris(self) -> None:
        for path in self.directory.glob("*.tmp"):
            path.unlink()
        committed = {p.name.removesuffix(".parquet") for p in self._score_parts()}
        for path in self.directory.glob(f"{_PART_PREFIX}*.completions.parquet"):
            if path.name.removesuffix(".completions.parquet") not in committed:
                path.unlink()

    def done_ids(self) -> set[str]:
        if not self.directory.exists():
            return set(read_scores(self.out)["id"].astype(str)) if self.out.exists() else set()
        frame = self._read_parts()
        return set(frame["id"].astype(str)) if frame is not None else set()

    def _read_parts(self) -> pd.DataFrame | None:
        parts = [pd.read_parquet(path) for path in self._score_parts()]
        if not parts:
            return None
        frame = pd.concat(parts, ignore_index=True)
        duplicated = frame["id"].duplicated()
        if duplicated.any():
            raise ScoringError(f"{self.directory}: problem {frame['id'][duplicated].iloc[0]!r} is in two parts")
        return frame

    def write_part(self, scores: pd.DataFrame, completions: pd.DataFrame | None) -> Path:
        existing = [int(p.name[len(_PART_PREFIX):].split(".")[0]) for p in self._score_parts()]
        stem = f"{_PART_PREFIX}{(max(existing) + 1) if existing else 0:06d}"
        if completions is not None:
            _atomic_write_parquet(completions, self.directory / f"{stem}.completions.parquet")
        path = self.directory / f"{stem}.parquet"
        _atomic_write_parquet(scores, path)  # the commit point of this chunk
        return path

    def finalize(self, order: list[str]) -> pd.DataFrame:
        """Join the parts into `out` (rows in problem order), then remove the parts directory."""
        if not self.directory.exists():
            return read_scores(self.out)
        frame = self._read_parts()
        if frame is None:
            frame = pd.DataFrame({column: pd.Series(dtype=object) for column in (*SCORE_COLUMNS, *EXTRA_COLUMNS)})
        missing = set(order) - set(frame["id"].astype(str))
        if missing:
            raise ScoringError(f"{self.directory}: {len(missing)} problem(s) were never scored "
                               f"(e.g. {sorted(missing)[0]!r})")
        rank = {problem_id: i for i, problem_id in enumerate(order)}
        frame = frame.sort_values("id", key=lambda ids: ids.map(rank), kind="stable").reset_index(drop=True)
        if self.completions_out is not None:
            parts = [pd.read_parquet(path) for path in sorted(self.directory.glob("*.completions.parquet"))]
            completions = (pd.concat(parts, ignore_index=True) if parts
                           else pd.DataFrame(columns=list(COMPLETION_COLUMNS)))
            completions = completions.sort_values(
                ["id", "sample"], key=lambda c: c.map(rank) if c.name == "id" else c, kind="stable"
            ).reset_index(drop=True)
            _atomic_write_parquet(completions, self.completions_out, metadata=self.run)
        _atomic_write_parquet(frame, self.out, metadata=self.run)
        shutil.rmtree(self.directory)
        return frame


def check_output(out: str | Path, *, resume: bool) -> None:
    """Refuse to overwrite a finished output or an interrupted run's parts unless resuming."""
    out = Path(out)
    if resume:
        return
    if parts_dir(out).exists():
        raise ScoringError(f"an interrupted run left {parts_dir(out)}; pass --resume to finish it, "
                           "or delete it to start over")
    if out.exists():
        raise ScoringError(f"{out} already exists; delete it, or pass --resume to complete it")


def _check_same_run(stored: dict | None, current: dict, where: str) -> None:
    if stored is None:
        raise ScoringError(f"{where} was not written by `curriculum score` (no run metadata); cannot resume it")
    keys = sorted(set(stored) | set(current))
    differ = [key for key in keys if stored.get(key) != current.get(key)]
    if differ:
        detail = "; ".join(f"{key}: was {stored.get(key)!r}, now {current.get(key)!r}" for key in differ[:4])
        raise ScoringError(f"cannot resume {where}: settings differ ({detail})")


def read_metadata(path: str | Path) -> dict | None:
    """The run settings stored in a scores parquet written by `score` or `merge_shards` (None if absent)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw) if raw else None


def read_scores(path: str | Path) -> pd.DataFrame:
    return read_table(path, "scores", error=ScoringError)


def _atomic_write_parquet(frame: pd.DataFrame, path: Path, *, metadata: dict | None = None) -> None:
    """A parquet file written atomically, the run settings (if any) stored in its schema."""
    extra = {METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()} if metadata is not None else None
    atomic_write_parquet(frame, path, schema_metadata=extra)


# --------------------------------------------------------------------------------------------------------
# shards


def merge_shards(paths: Sequence[str | Path], out: str | Path, *, problems: pd.DataFrame | None = None) -> pd.DataFrame:
    """Join the outputs of `--shard i/N` runs into one scores file; refuse overlaps, gaps and mixed settings.

    Completions side files are joined too when every shard has one.
    """
    if not paths:
        raise ScoringError("no shard files to merge")
    frames, runs = [], []
    for path in map(Path, paths):
        frame = read_scores(path)
        run = read_metadata(path)
        if run is None:
            raise ScoringError(f"{path} was not written by `curriculum score` (no run metadata)")
        if not run.get("shard"):
            raise ScoringError(f"{path} is not a shard (it was scored without --shard)")
        if len(frame) != run.get("expected_rows"):
            raise ScoringError(f"{path}: shard {run['shard']} holds {len(frame)} of its {run.get('expected_rows')} "
                               "problems (gap); finish it with --resume")
        frames.append(frame)
        runs.append((path, run))
    first_path, first = runs[0]
    shared = [key for key in first if key not in ("shard", "expected_rows", "keep_completions")]
    for path, run in runs[1:]:
        differ = [key for key in shared if run.get(key) != first.get(key)]
        if differ:
            key = differ[0]
            raise ScoringError(f"{path} and {first_path} were scored differently ({key}: {run.get(key)!r} vs "
                               f"{first.get(key)!r}); they cannot be merged")
    count = Shard.parse(first["shard"]).count
    seen: dict[int, Path] = {}
    for path, run in runs:
        shard = Shard.parse(run["shard"])
        if shard.count != count:
            raise ScoringError(f"{path} is shard {shard} but {first_path} is shard {first['shard']}")
        if shard.index in seen:
            raise ScoringError(f"{path} and {seen[shard.index]} are both shard {shard} (overlap)")
        seen[shard.index] = path
    absent = [f"{i}/{count}" for i in range(count) if i not in seen]
    if absent:
        raise ScoringError(f"missing shard(s) {', '.join(absent)} (gap)")
    merged = pd.concat(frames, ignore_index=True)
    duplicated = merged["id"].duplicated()
    if duplicated.any():
        raise ScoringError(f"problem {merged['id'][duplicated].iloc[0]!r} appears in more than one shard (overlap)")
    if len(merged) != first["problems_total"]:
        raise ScoringError(f"shards hold {len(merged)} problems but the problems file had {first['problems_total']}")
    if problems is not None:
        ids = problems["id"].astype(str)
        if problems_fingerprint(ids) != first["problems_fingerprint"]:
            raise ScoringError("the shards were scored on a different problems file than the one given")
        rank = {problem_id: i for i, problem_id in enumerate(ids)}
        merged = merged.sort_values("id", key=lambda c: c.map(rank), kind="stable").reset_index(drop=True)
    run = {**first, "shard": None, "expected_rows": len(merged)}
    out = Path(out)
    side_files = [completions_path(path) for path, _ in runs]
    if all(path.is_file() for path in side_files):
        completions = pd.concat([pd.read_parquet(path) for path in side_files], ignore_index=True)
        _atomic_write_parquet(completions, completions_path(out), metadata=run)
    _atomic_write_parquet(merged, out, metadata=run)
    return merged

def completions_path(out: str | Path) -> Path:
    """Where per-sample rows go beside a scores file: runs/x/scores.parquet -> runs/x/scores.completions.parquet."""
    return layout.completions_path(out)


def parts_dir(out: str | Path) -> Path:
    """The finished chunks of an unfinished run: runs/x/scores.parquet -> runs/x/scores.parquet.parts/."""
    return layout.parts_dir(out)
