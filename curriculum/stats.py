"""The statistics every number of this package carries: binomial intervals for pass rates, bootstrap
intervals over problems for avg@k, paired differences, pass@k and majority vote.

Binomial confidence intervals for pass rates (k successes in n rollouts):
Scoring and evaluation both report a pass rate with an interval. The Wald interval (p ± z·se) collapses to a
point at k = 0 or k = n, exactly where small models live, so we use the two intervals Brown, Cai and DasGupta
(2001) recommend: Wilson (closed form) and Jeffreys (equal-tailed Beta(k + 1/2, n - k + 1/2) posterior
interval, with the bound at an observed 0 or 1 pinned there). Both accept scalars or numpy arrays.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

IntervalMethod = Literal["wilson", "jeffreys"]
INTERVAL_METHODS: tuple[str, ...] = ("wilson", "jeffreys")
DEFAULT_RESAMPLES = 2000


def _check(k, n, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    if np.any(n_arr < 0) or np.any(k_arr < 0) or np.any(k_arr > n_arr):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    return k_arr, n_arr


def _out(low: np.ndarray, high: np.ndarray, scalar: bool):
    if scalar:
        return float(low), float(high)
    return low, high


def wilson_interval(k, n, confidence: float = 0.95):
    """Wilson score interval for k successes in n trials; (0.0, 1.0) when n = 0."""
    from scipy.stats import norm

    scalar = np.ndim(k) == 0 and np.ndim(n) == 0
    k_arr, n_arr = _check(k, n, confidence)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(n_arr > 0, k_arr / np.maximum(n_arr, 1), 0.5)
        denom = 1 + z * z / n_arr
        center = (p + z * z / (2 * n_arr)) / denom
        half = z * np.sqrt(p * (1 - p) / n_arr + z * z / (4 * n_arr * n_arr)) / denom
        low = np.where(n_arr > 0, np.clip(center - half, 0.0, 1.0), 0.0)
        high = np.where(n_arr > 0, np.clip(center + half, 0.0, 1.0), 1.0)
    # Exact ends: the interval of an observed 0 (or 1) starts (or ends) there, free of rounding.
    low = np.where(k_arr == 0, 0.0, low)
    high = np.where((k_arr == n_arr) & (n_arr > 0), 1.0, high)
    return _out(low, high, scalar)


def jeffreys_interval(k, n, confidence: float = 0.95):
    """Jeffreys interval: Beta(k+1/2, n-k+1/2) quantiles, low = 0 at k = 0 and high = 1 at k = n."""
    from scipy.stats import beta

    scalar = np.ndim(k) == 0 and np.ndim(n) == 0
    k_arr, n_arr = _check(k, n, confidence)
    alpha = 1.0 - confidence
    a, b = k_arr + 0.5, n_arr - k_arr + 0.5
    low = np.where(k_arr > 0, beta.ppf(alpha / 2, a, b), 0.0)
    high = np.where(k_arr < n_arr, beta.isf(alpha / 2, a, b), 1.0)
    return _out(low, high, scalar)


def binomial_interval(k, n, *, method: IntervalMethod = "wilson", confidence: float = 0.95):
    """Dispatch to `wilson_interval` or `jeffreys_interval` by name."""
    if method == "wilson":
        return wilson_interval(k, n, confidence)
    if method == "jeffreys":
        return jeffreys_interval(k, n, confidence)
    raise ValueError(f"unknown interval method {method!r}; expected one of {', '.join(INTERVAL_METHODS)}")


# --------------------------------------------------------------------------------------------------
# Over problems: avg@k, paired differences, pass@k, majority vote


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided interval at `confidence`."""

    mean: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high}


def bootstrap_interval(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean of per-problem values (resampling problems).

    `values` holds one number per problem (e.g. its fraction of correct samples), so the k samples of a
    problem travel together and their correlation widens the interval as it should.
    """
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, confidence)
    means = _bootstrap_means(data, resamples, seed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(data.mean()), float(low), float(high), confidence)


def _bootstrap_means(data: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)


def clustered_interval(correct: Sequence[int], n: int | Sequence[int], *, confidence: float = 0.95) -> Interval:
    """Normal interval for avg@k with the standard error of per-problem means (problems are the clusters).

    With `correct[i]` passes out of `n` samples for problem i, the estimate is the mean of c_i / n and its
    standard error is sd(c_i / n) / sqrt(#problems): k samples of one problem count as one observation of
    that problem's pass rate, not as k independent ones. Clipped to [0, 1].
    """
    from scipy.stats import norm

    counts = np.asarray(correct, dtype=float)
    totals = np.broadcast_to(np.asarray(n, dtype=float), counts.shape)
    if counts.size == 0:
        return Interval(math.nan, math.nan, math.nan, confidence)
    rates = counts / totals
    mean = float(rates.mean())
    if counts.size < 2:
        return Interval(mean, 0.0, 1.0, confidence)
    stderr = float(rates.std(ddof=1) / math.sqrt(counts.size))
    z = float(norm.ppf(0.5 + confidence / 2.0))
    return Interval(mean, max(0.0, mean - z * stderr), min(1.0, mean + z * stderr), confidence)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k from n samples with c correct (Chen et al. 2021, eq. 1).

    1 - C(n - c, k) / C(n, k), computed as a running product so large n does not overflow.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_k_values(samples: int) -> list[int]:
    """The k for which pass@k is reported: powers of two up to `samples`, and `samples` itself."""
    values = [2**i for i in range(int(math.log2(samples)) + 1)] if samples >= 1 else []
    if samples not in values:
        values.append(samples)
    return values


def normalize_answer(answer: str) -> str:
    """Key used to group equal extracted answers for majority voting (whitespace and `$` are cosmetic)."""
    return "".join(answer.split()).strip("$").rstrip(".")


def majority_vote(predicted: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@k for one problem: is the most common extracted answer a correct one?

    Samples without an answer do not vote; ties go to the answer seen first, so the vote is deterministic.
    """
    keys = [normalize_answer(p) if p else None for p in predicted]
    votes = Counter(key for key in keys if key)
    if not votes:
        return False
    best = max(votes.values())
    winner = next(key for key in keys if key and votes[key] == best)
    return any(ok for key, ok in zip(keys, correct, strict=True) if key == winner)


def paired_bootstrap_difference(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Mean of a - b over the same problems with a paired bootstrap interval (problems resampled jointly).

    Returns mean, ci_low, ci_high, p_value (two-sided bootstrap: twice the smaller tail share beyond 0) and
    `significant` (the interval excludes 0).
    """
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if first.shape != second.shape:
        raise ValueError(f"paired bootstrap needs the same problems on both sides, got {first.size} and {second.size}")
    diff = first - second
    if diff.size == 0:
        return {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
                "significant": False, "n_problems": 0}
    interval = bootstrap_interval(diff, confidence=confidence, resamples=resamples, seed=seed)
    means = _bootstrap_means(diff, resamples, seed)
    p_value = float(min(1.0, 2.0 * min((means <= 0).mean(), (means >= 0).mean())))
    significant = bool(interval.low > 0 or interval.high < 0)
    return {**interval.to_dict(), "p_value": p_value, "significant": significant, "n_problems": int(diff.size)}


def seed_level_difference(per_seed: Sequence[float], *, confidence: float = 0.95) -> dict | None:
    """Mean of per-seed differences with a Student-t interval and p over seeds (None under two seeds).

    The bootstrap over problems holds the trained models fixed, so it says nothing about how much a
    difference moves with the training seed; with few runs that variation is the larger one. Each run's
    difference already carries its problems' noise, so the t interval over runs covers both.

    >>> out = seed_level_difference([0.01, 0.02, 0.03])
    >>> round(out["mean"], 3), round(out["ci_low"], 4), round(out["ci_high"], 4), out["n_seeds"]
    (0.02, -0.0048, 0.0448, 3)
    """
    from scipy.stats import t

    values = np.asarray(per_seed, dtype=float)
    n = values.size
    if n < 2:
        return None
    mean, spread = float(values.mean()), float(values.std(ddof=1))
    if spread == 0.0:  # every seed the same: the interval is that point
        return {"mean": mean, "ci_low": mean, "ci_high": mean, "p_value": 0.0 if mean else 1.0,
                "significant": mean != 0.0, "n_seeds": n}
    se = spread / math.sqrt(n)
    half = float(t.ppf(0.5 + confidence / 2.0, df=n - 1)) * se
    p_value = float(2.0 * t.sf(abs(mean) / se, df=n - 1))
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "p_value": p_value,
            "significant": bool(mean - half > 0 or mean + half < 0), "n_seeds": n}


def pooled_seed_spread(per_seed_by_arm: Sequence[Sequence[float]]) -> tuple[float, int] | None:
    """(standard deviation, degrees of freedom) of per-seed differences pooled over arms, each arm about its
    own mean: how much a difference moves from one training seed to the next. None under one df."""
    squares, df = 0.0, 0
    for values in per_seed_by_arm:
        values = np.asarray(values, dtype=float)
        if values.size >= 2:
            squares += float(((values - values.mean()) ** 2).sum())
            df += values.size - 1
    return (math.sqrt(squares / df), df) if df else None


def seeds_for_paired_difference(spread: float, effect: float, *, alpha: float = 0.05, power: float = 0.8,
                                max_seeds: int = 100_000) -> int | None:
    """The fewest seeds per arm at which a two-sided paired t-test at `alpha` finds a true difference of
    `effect` with probability `power`, when per-seed differences have standard deviation `spread` (None past
    `max_seeds`): the scale a study needs before its null result means "no effect of this size".

    >>> seeds_for_paired_difference(1.0, 1.0)   # an effect of one standard deviation
    10
    """
    from scipy.stats import nct, t

    if spread <= 0 or effect == 0:
        raise ValueError("need spread > 0 and effect != 0")

    def achieved(n: int) -> float:
        critical = t.ppf(1 - alpha / 2, df=n - 1)
        shift = abs(effect) / spread * math.sqrt(n)
        return float(nct.sf(critical, n - 1, shift) + nct.cdf(-critical, n - 1, shift))

    low, high = 2, 2
    while achieved(high) < power:  # double up to a bracket, then bisect: power grows with n
        low, high = high, high * 2
        if high > max_seeds:
            return None
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if achieved(middle) < power else (low, middle)
    return low


def fmt_interval(metric: dict | None, scale: float = 100.0) -> str:
    """'41.2 [35.0, 47.5]' from {"mean", "ci_low", "ci_high"} (percent by default).

    >>> fmt_interval({"mean": 0.412, "ci_low": 0.35, "ci_high": 0.475})
    '41.2 [35.0, 47.5]'
    """
    if not metric or metric.get("mean") is None or math.isnan(metric["mean"]):
        return "–"
    return f"{metric['mean'] * scale:.1f} [{metric['ci_low'] * scale:.1f}, {metric['ci_high'] * scale:.1f}]"
