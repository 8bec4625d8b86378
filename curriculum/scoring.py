"""Difficulty as a pass rate under base-model rollouts: fixed-n or adaptive, resumable, sharded.

A problem's difficulty is the share of the base model's sampled completions that `curriculum.verify`
accepts, with a binomial interval (Wilson or Jeffreys, `curriculum.stats`) that says how sure we are.

Adaptive mode samples in rounds of `samples` and stops a problem as soon as its interval (at the lower
`stop_confidence`) lies inside one band of `edges` (default 0.8, 0.5, 0.2: bands [0, .2], [.2, .5],
[.5, .8], [.8, 1]), because all the build stage will ever ask of the score is which band it falls in:
problems solved always or never settle in an extreme band after one round, problems near an edge use the
full `max_samples`.

Scoring is most of the compute before training, so finished work is never lost: problems are scored in
chunks, and each finished chunk is written as its own parquet part (temporary file, fsync, atomic rename)
under `<out>.parts/`. A kill -9 loses at most the chunk in flight; `resume=True` skips every problem that
has a part and the last step consolidates the parts into `<out>` (again atomically) and removes them.
`shard=Shard(i, N)` keeps the problems whose id hashes to i mod N, and `merge_shards` joins the N outputs,
refusing overlaps and gaps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from curriculum import contracts
from curriculum.contracts import atomic_write_bytes, atomic_write_parquet, read_table
from curriculum.prompts import DEFAULT_TEMPLATE, PromptTemplate
from curriculum.rollout.base import RolloutEngine, RolloutError, Sampling
from curriculum.stats import INTERVAL_METHODS, binomial_interval

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


# --------------------------------------------------------------------------------------------------------
# estimation


def band_index(pass_rates, edges: Sequence[float] = DEFAULT_EDGES) -> np.ndarray:
    """Band of each pass rate, 0 = easiest (see `curriculum.contracts.band_index`)."""
    return contracts.band_index(pass_rates, edges)


def settled(ci_low, ci_high, edges: Sequence[float]) -> np.ndarray:
    """True where the interval lies inside one band: no edge strictly between its ends."""
    low = np.asarray(ci_low, dtype=float)[..., None]
    high = np.asarray(ci_high, dtype=float)[..., None]
    cuts = np.asarray(edges, dtype=float)
    return ~np.any((low < cuts) & (cuts < high), axis=-1)


def adaptive_sample_sizes(outcomes: np.ndarray, config: ScoreConfig) -> np.ndarray:
    """Replay the adaptive rule on recorded outcomes (problems x max_samples, in sampling order).

    Gives the number of rollouts adaptive scoring would have spent on each problem had it drawn these same
    samples; used to compare adaptive with fixed scoring on one set of rollouts.
    """
    outcomes = np.asarray(outcomes, dtype=bool)
    sizes = np.full(len(outcomes), min(config.budget, outcomes.shape[1]))
    active = np.ones(len(outcomes), dtype=bool)
    n = config.samples
    while n < config.budget and active.any():
        k = outcomes[:, :n].sum(axis=1)
        low, high = binomial_interval(k, np.full(len(k), n), method=config.interval,
                                      confidence=config.stop_confidence)
        stop = active & settled(low, high, config.edges)
        sizes[stop] = n
        active &= ~stop
        n = min(config.budget, n + config.samples)
    return sizes


def _round_seed(base: int, chunk_key: str, round_index: int) -> int:
    """A seed per (chunk, round): rounds never repeat a sample, and a resumed chunk draws what it would have."""
    digest = hashlib.sha256(f"{base}:{chunk_key}:{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Progress:
    """Where a scoring run stands; passed to `on_progress` after every engine call."""

    problems_done: int
    problems_total: int
    rollouts: int  # drawn in this session
    tokens: int  # generated in this session
    elapsed_s: float


def score_chunk(
    engine: RolloutEngine,
    chunk: pd.DataFrame,
    config: ScoreConfig,
    *,
    model: str,
    chunk_key: str = "",
    keep_completions: bool = False,
    on_round: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Score the problems of `chunk` to completion; returns their score rows and (optionally) completions.

    `on_round(rollouts, tokens)` is called after each engine call.
    """
    from curriculum.verify import check_batch

    prompts = [config.template.messages(str(problem)) for problem in chunk["problem"]]
    golds = [str(answer) for answer in chunk["answer"]]
    size = len(prompts)
    n = np.zeros(size, dtype=int)
    k = np.zeros(size, dtype=int)
    tokens = np.zeros(size, dtype=np.int64)
    truncated = np.zeros(size, dtype=int)
    unverified = np.zeros(size, dtype=int)
    kept: list[dict] = []
    active = np.arange(size)
    round_index = 0
    while active.size:
        draw = min(config.samples, config.budget - int(n[active[0]]))
        sampling = replace(config.sampling, seed=_round_seed(config.sampling.seed, chunk_key, round_index))
        groups = engine.generate([prompts[i] for i in active], draw, sampling)
        if len(groups) != active.size or any(len(group) != draw for group in groups):
            raise RolloutError(
                f"engine {engine.name} returned {len(groups)} groups for {active.size} prompts (expected {draw} each)"
            )
        texts = [completion.text for group in groups for completion in group]
        verdicts = check_batch(
            texts, [golds[i] for i in active for _ in range(draw)],
            extraction=config.extraction, timeout_s=config.verify_timeout_s,
        )
        round_tokens = 0
        for slot, i in enumerate(active):
            for j, completion in enumerate(groups[slot]):
                verdict = verdicts[slot * draw + j]
                k[i] += verdict.correct
                tokens[i] += completion.num_tokens
                truncated[i] += completion.truncated
                unverified[i] += verdict.status in ("timeout", "error", "unparseable_gold")
                round_tokens += completion.num_tokens
                if keep_completions:
                    kept.append({
                        "id": str(chunk["id"].iloc[i]), "sample": int(n[i]) + j, "text": completion.text,
                        "num_tokens": int(completion.num_tokens), "finish_reason": completion.finish_reason,
                        "status": verdict.status, "predicted": verdict.predicted, "correct": bool(verdict.correct),
                    })
        n[active] += draw
        if on_round:
            on_round(active.size * draw, round_tokens)
        if not config.adaptive:
            break
        low, high = binomial_interval(k[active], n[active], method=config.interval,
                                      confidence=config.stop_confidence)
        done = settled(low, high, config.edges) | (n[active] >= config.budget)
        active = active[~done]
        round_index += 1

    low, high = binomial_interval(k, n, method=config.interval, confidence=config.confidence)
    sampling_json = json.dumps(config.sampling.to_dict(), sort_keys=True)
    scores = pd.DataFrame({
        "id": chunk["id"].astype(str).to_numpy(),
        "n": n, "k": k, "pass_rate": k / n, "ci_low": low, "ci_high": high,
        "mean_tokens": tokens / n, "truncated_frac": truncated / n,
        "model": model, "engine": engine.name, "sampling": sampling_json, "unverified": unverified,
    })
    completions = pd.DataFrame(kept, columns=list(COMPLETION_COLUMNS)) if keep_completions else None
    return scores, completions


# --------------------------------------------------------------------------------------------------------
# the run


@dataclass
class ScoreSummary:
    """What a scoring run produced (over the whole output, resumed parts included) and what it cost."""

    out: Path
    completions_out: Path | None
    problems: int
    scored_now: int
    rollouts: int
    rollouts_budget: int
    rollouts_now: int
    tokens_now: int
    elapsed_s: float
    mean_pass_rate: float
    truncated_frac: float
    unverified: int
    histogram: list[tuple[str, int]]
    adaptive: bool

    @property
    def rollouts_saved(self) -> int:
        return self.rollouts_budget - self.rollouts


def completions_path(out: str | Path) -> Path:
    """Where per-sample rows go beside a scores file: runs/x/scores.parquet -> runs/x/scores.completions.parquet."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".parquet") + ".completions.parquet")


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def score(
    problems: pd.DataFrame,
    engine: RolloutEngine,
    config: ScoreConfig,
    out: str | Path,
    *,
    model: str,
    shard: Shard | None = None,
    resume: bool = False,
    keep_completions: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> ScoreSummary:
    """Score every problem (of `shard`) into `out`, writing each finished chunk at once (see module doc).

    `model` is the label written into every row. With `resume=False` an existing output or an interrupted
    run's parts are refused rather than overwritten; with `resume=True` their settings must match.
    """
    started = time.perf_counter()
    out = Path(out)
    validate_problems(problems)
    problems = problems.reset_index(drop=True)
    ids = problems["id"].astype(str)
    target = problems[shard.mask(ids)] if shard else problems
    run = {
        **config.identity(),
        "model": model,
        "engine": engine.name,
        "keep_completions": keep_completions,
        "shard": str(shard) if shard else None,
        "problems_fingerprint": problems_fingerprint(ids),
        "problems_total": len(problems),
        "expected_rows": len(target),
    }
    store = PartStore(out, run, resume=resume, keep_completions=keep_completions)
    done = store.done_ids()
    stray = done - set(target["id"].astype(str))
    if stray:
        raise ScoringError(f"{store.directory} holds {len(stray)} problem(s) not in this problems file/shard "
                           f"(e.g. {sorted(stray)[0]!r}); it belongs to another run")
    pending = target[~target["id"].astype(str).isin(done)]
    counters = {"rollouts": 0, "tokens": 0}
    problems_done = len(target) - len(pending)

    def report() -> None:
        if on_progress:
            on_progress(Progress(problems_done, len(target), counters["rollouts"], counters["tokens"],
                                 time.perf_counter() - started))

    def on_round(rollouts: int, tokens: int) -> None:
        counters["rollouts"] += rollouts
        counters["tokens"] += tokens
        report()

    report()
    chunk_size = config.chunk_size_for(len(target))  # from the whole target, so a resume cuts the same chunks
    for start in range(0, len(pending), chunk_size):
        chunk = pending.iloc[start:start + chunk_size]
        scores, completions = score_chunk(
            engine, chunk, config, model=model, chunk_key=str(chunk["id"].iloc[0]),
            keep_completions=keep_completions, on_round=on_round,
        )
        store.write_part(scores, completions)
        problems_done += len(chunk)
        report()
    frame = store.finalize(target["id"].astype(str).tolist())
    return _summary(frame, config, out, store.completions_out, scored_now=len(pending),
                    rollouts_now=counters["rollouts"], tokens_now=counters["tokens"],
                    elapsed_s=time.perf_counter() - started)


def _summary(frame: pd.DataFrame, config: ScoreConfig, out: Path, completions_out: Path | None, *,
             scored_now: int, rollouts_now: int, tokens_now: int, elapsed_s: float) -> ScoreSummary:
    rates = frame["pass_rate"].to_numpy(dtype=float)
    rollouts = int(frame["n"].sum())
    return ScoreSummary(
        out=out,
        completions_out=completions_out,
        problems=len(frame),
        scored_now=scored_now,
        rollouts=rollouts,
        rollouts_budget=len(frame) * config.budget,
        rollouts_now=rollouts_now,
        tokens_now=tokens_now,
        elapsed_s=elapsed_s,
        mean_pass_rate=float(rates.mean()) if len(rates) else float("nan"),
        truncated_frac=float((frame["truncated_frac"] * frame["n"]).sum() / rollouts) if rollouts else float("nan"),
        unverified=int(frame["unverified"].gt(0).sum()) if "unverified" in frame else 0,
        histogram=pass_rate_histogram(rates),
        adaptive=config.adaptive,
    )


def pass_rate_histogram(rates) -> list[tuple[str, int]]:
    """Counts of never solved, five bins of (0, 1), and always solved."""
    rates = np.asarray(rates, dtype=float)
    rows = [("0 (never solved)", int((rates == 0).sum()))]
    bounds = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        inside = (rates > 0) & (rates < 1) & (rates >= low) & (rates < high)
        rows.append((f"[{low:.1f}, {high:.1f})" if low > 0 else f"(0.0, {high:.1f})", int(inside.sum())))
    rows.append(("1 (always solved)", int((rates == 1).sum())))
    return rows


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


__all__ = [
    "COMPLETION_COLUMNS", "DEFAULT_EDGES", "SCORE_COLUMNS", "PartStore", "Progress", "ScoreConfig", "ScoreSummary",
    "ScoringError", "Shard", "adaptive_sample_sizes", "band_index", "check_output", "completions_path", "load_problems",
    "merge_shards", "pass_rate_histogram", "problems_fingerprint", "read_metadata", "read_scores", "score",
    "score_chunk", "settled", "validate_problems",
]
