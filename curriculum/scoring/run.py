"""The scoring loop: chunks of pending problems through estimation into the store, with progress, and the
summary of what the whole output holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from curriculum.rollout.base import RolloutEngine
from curriculum.scoring.config import (
    ScoreConfig,
    ScoringError,
    Shard,
    problems_fingerprint,
    validate_problems,
)
from curriculum.scoring.estimation import Progress, score_chunk
from curriculum.scoring.store import PartStore

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

    def summary(self) -> str:
        """One line over the whole scores file: problems, mean pass rate, never and always solved."""
        rates = pd.read_parquet(self.out, columns=["pass_rate"])["pass_rate"]
        return (f"{len(rates)} scored, mean pass rate {rates.mean():.2f}, {(rates == 0).mean():.0%} never solved, "
                f"{(rates == 1).mean():.0%} always")



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
    pending = _pending(store, target)
    tracker = _Tracker(on_progress, total=len(target), problems_done=len(target) - len(pending), started=started)
    tracker.report()
    chunk_size = config.chunk_size_for(len(target))  # from the whole target, so a resume cuts the same chunks
    for start in range(0, len(pending), chunk_size):
        chunk = pending.iloc[start:start + chunk_size]
        scores, completions = score_chunk(
            engine, chunk, config, model=model, chunk_key=str(chunk["id"].iloc[0]),
            keep_completions=keep_completions, on_round=tracker.on_round,
        )
        store.write_part(scores, completions)
        tracker.problems_done += len(chunk)
        tracker.report()
    frame = store.finalize(target["id"].astype(str).tolist())
    return _summary(frame, config, out, store.completions_out, scored_now=len(pending),
                    rollouts_now=tracker.rollouts, tokens_now=tracker.tokens,
                    elapsed_s=time.perf_counter() - started)


def _pending(store: PartStore, target: pd.DataFrame) -> pd.DataFrame:
    """The target problems the store has not finished; finished parts of problems outside the target mean the
    parts belong to another run, and are refused."""
    done = store.done_ids()
    stray = done - set(target["id"].astype(str))
    if stray:
        raise ScoringError(f"{store.directory} holds {len(stray)} problem(s) not in this problems file/shard "
                           f"(e.g. {sorted(stray)[0]!r}); it belongs to another run")
    return target[~target["id"].astype(str).isin(done)]


class _Tracker:
    """This session's progress: problems done (resumed ones included), and rollouts and tokens drawn now;
    told to `on_progress` at the start, after every engine call and after every written chunk."""

    def __init__(self, on_progress: Callable[[Progress], None] | None, *, total: int, problems_done: int,
                 started: float) -> None:
        self.on_progress, self.total, self.problems_done, self.started = on_progress, total, problems_done, started
        self.rollouts = self.tokens = 0

    def report(self) -> None:
        if self.on_progress:
            self.on_progress(Progress(self.problems_done, self.total, self.rollouts, self.tokens,
                                      time.perf_counter() - self.started))

    def on_round(self, rollouts: int, tokens: int) -> None:
        self.rollouts += rollouts
        self.tokens += tokens
        self.report()


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
