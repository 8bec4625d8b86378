"""Pass-rate estimation: rollouts of a chunk of problems, verified, in rounds until each interval settles in
one band of the edges (adaptive) or after a fixed number (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from curriculum import contracts
from curriculum.rollout.base import RolloutEngine, RolloutError
from curriculum.scoring.config import COMPLETION_COLUMNS, DEFAULT_EDGES, ScoreConfig
from curriculum.stats import binomial_interval

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
