"""Binomial confidence intervals for pass rates (k successes in n rollouts).

Scoring and evaluation both report a pass rate with an interval. The Wald interval (p ± z·se) collapses to a
point at k = 0 or k = n, exactly where small models live, so we use the two intervals Brown, Cai and DasGupta
(2001) recommend: Wilson (closed form) and Jeffreys (equal-tailed Beta(k + 1/2, n - k + 1/2) posterior
interval, with the bound at an observed 0 or 1 pinned there). Both accept scalars or numpy arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

IntervalMethod = Literal["wilson", "jeffreys"]
INTERVAL_METHODS: tuple[str, ...] = ("wilson", "jeffreys")


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
