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
    prompts = [config.template.messages(str(problem)) for problem in chunk["problem"]]
    golds = [str(answer) for answer in chunk["answer"]]
    tally = _Tally.empty(len(prompts))
    active = np.arange(len(prompts))
    round_index = 0
    while active.size:
        draw = min(config.samples, config.budget - int(tally.n[active[0]]))
        sampling = replace(config.sampling, seed=_round_seed(config.sampling.seed, chunk_key, round_index))
        groups, verdicts = _sample_round(engine, [prompts[i] for i in active], [golds[i] for i in active], draw,
                                         sampling, config)
        round_tokens = tally.add_round(chunk, active, groups, verdicts, draw, keep_completions=keep_completions)
        if on_round:
            on_round(active.size * draw, round_tokens)
        if not config.adaptive:
            break
        low, high = binomial_interval(tally.k[active], tally.n[active], method=config.interval,
                                      confidence=config.stop_confidence)
        done = settled(low, high, config.edges) | (tally.n[active] >= config.budget)
        active = active[~done]
        round_index += 1

    scores = _score_rows(chunk, tally, config, model=model, engine=engine.name)
    completions = pd.DataFrame(tally.kept, columns=list(COMPLETION_COLUMNS)) if keep_completions else None
    return scores, completions


def _sample_round(engine: RolloutEngine, prompts: list, golds: list[str], draw: int, sampling,
                  config: ScoreConfig) -> tuple[list, list]:
    """`draw` completions per prompt from the engine, checked for count, and each one's verdict."""
    from curriculum.verify import check_batch

    groups = engine.generate(prompts, draw, sampling)
    if len(groups) != len(prompts) or any(len(group) != draw for group in groups):
        raise RolloutError(
            f"engine {engine.name} returned {len(groups)} groups for {len(prompts)} prompts (expected {draw} each)"
        )
    texts = [completion.text for group in groups for completion in group]
    verdicts = check_batch(
        texts, [gold for gold in golds for _ in range(draw)],
        extraction=config.extraction, timeout_s=config.verify_timeout_s,
    )
    return groups, verdicts


@dataclass
class _Tally:
    """Per-problem sums over the rounds of one chunk: rollouts (n), passes (k), tokens, truncated samples and
    samples the verifier could not judge, plus every completion when they are kept."""

    n: np.ndarray
    k: np.ndarray
    tokens: np.ndarray
    truncated: np.ndarray
    unverified: np.ndarray
    kept: list[dict]

    @classmethod
    def empty(cls, size: int) -> _Tally:
        return cls(n=np.zeros(size, dtype=int), k=np.zeros(size, dtype=int), tokens=np.zeros(size, dtype=np.int64),
                   truncated=np.zeros(size, dtype=int), unverified=np.zeros(size, dtype=int), kept=[])

    def add_round(self, chunk: pd.DataFrame, active: np.ndarray, groups: list, verdicts: list, draw: int, *,
                  keep_completions: bool) -> int:
        """Add one round of the `active` problems (`draw` samples each); returns the tokens it generated."""
        round_tokens = 0
        for slot, i in enumerate(active):
            for j, completion in enumerate(groups[slot]):
                verdict = verdicts[slot * draw + j]
                self.k[i] += verdict.correct
                self.tokens[i] += completion.num_tokens
                self.truncated[i] += completion.truncated
                self.unverified[i] += verdict.status in ("timeout", "error", "unparseable_gold")
                round_tokens += completion.num_tokens
                if keep_completions:
                    self.kept.append({
                        "id": str(chunk["id"].iloc[i]), "sample": int(self.n[i]) + j, "text": completion.text,
                        "num_tokens": int(completion.num_tokens), "finish_reason": completion.finish_reason,
                        "status": verdict.status, "predicted": verdict.predicted, "correct": bool(verdict.correct),
                    })
        self.n[active] += draw
        return round_tokens


def _score_rows(chunk: pd.DataFrame, tally: _Tally, config: ScoreConfig, *, model: str, engine: str) -> pd.DataFrame:
    """The chunk's rows of the scores contract: pass rate with its interval, tokens, truncation, provenance."""
    low, high = binomial_interval(tally.k, tally.n, method=config.interval, confidence=config.confidence)
    sampling_json = json.dumps(config.sampling.to_dict(), sort_keys=True)
    n, k = tally.n, tally.k
    return pd.DataFrame({
        "id": chunk["id"].astype(str).to_numpy(),
        "n": n, "k": k, "pass_rate": k / n, "ci_low": low, "ci_high": high,
        "mean_tokens": tally.tokens / n, "truncated_frac": tally.truncated / n,
        "model": model, "engine": engine, "sampling": sampling_json, "unverified": tally.unverified,
    })
