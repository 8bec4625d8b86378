"""Pacing functions: training progress t in [0, 1] (or observed rewards) -> sampling weights over buckets.

Buckets are numbered easiest (0) to hardest (K-1). Every schedule is a pure function
`fn(t, sizes, **options) -> weights` registered by name; `sizes[k]` is how many problems bucket k holds
now (an empty bucket always gets weight 0). `get_schedule(name, **options)` wraps one in a `Schedule`,
which also turns bucket weights into per-problem sampling probabilities for the sampler. The one schedule
that learns from rewards, `adaptive` (AdaRFT), is a `Schedule` with a target difficulty as its state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ScheduleFn = Callable[..., np.ndarray]
SCHEDULES: dict[str, ScheduleFn] = {}
COMPETENCE: dict[str, Callable[..., float]] = {}


def register(name: str, competence: Callable[..., float] | None = None):
    """Add a pacing function to the registry under `name` (with its competence function, if it has one)."""

    def decorator(fn: ScheduleFn) -> ScheduleFn:
        SCHEDULES[name] = fn
        if competence is not None:
            COMPETENCE[name] = competence
        return fn

    return decorator


def _sizes(sizes) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=float)
    if sizes.ndim != 1 or len(sizes) == 0 or (sizes < 0).any():
        raise ValueError(f"bucket sizes must be a non-empty list of counts >= 0, got {sizes.tolist()}")
    if sizes.sum() <= 0:
        raise ValueError("every bucket is empty: nothing to sample")
    return sizes


def _normalize(weights: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Zero out empty buckets and scale to sum 1 (falling back to size-proportional if nothing is left)."""
    weights = np.where(sizes > 0, np.clip(weights, 0.0, None), 0.0)
    total = weights.sum()
    return weights / total if total > 0 else sizes / sizes.sum()


def _position(t: float, duration: float) -> float:
    """Progress through the pacing period: min(1, t / T), with T = `duration` in (0, 1]."""
    if not 0 < duration <= 1:
        raise ValueError(f"duration must be in (0, 1], got {duration}")
    return min(1.0, max(0.0, float(t)) / duration)


# Competence functions (Platanios et al. 2019): the fraction c(t) of the data, easiest first, open to sampling.


def linear_competence(t: float, c0: float = 0.1, duration: float = 0.8) -> float:
    """c(t) = min(1, t (1 - c0) / T + c0)."""
    return min(1.0, _position(t, duration) * (1 - c0) + c0)


def root_competence(t: float, p: float = 2.0, c0: float = 0.1, duration: float = 0.8) -> float:
    """c(t) = min(1, (t (1 - c0^p) / T + c0^p)^(1/p)): fast early growth, more time on the hard tail."""
    return min(1.0, (_position(t, duration) * (1 - c0**p) + c0**p) ** (1 / p))


def exp_competence(t: float, c0: float = 0.1, duration: float = 0.8) -> float:
    """c(t) = min(1, c0^(1 - t/T)): exponential pacing (Hacohen & Weinshall 2019), slow start, doubles fast."""
    return min(1.0, c0 ** (1 - _position(t, duration)))


def competence_weights(c: float, sizes) -> np.ndarray:
    """Sample uniformly from the easiest c·N problems: w_k ∝ clip(c·N - N_<k, 0, n_k)."""
    sizes = _sizes(sizes)
    before = np.concatenate([[0.0], np.cumsum(sizes)[:-1]])
    open_now = np.clip(c * sizes.sum() - before, 0.0, sizes)
    return _normalize(open_now, sizes)


@register("uniform")
def uniform(t: float, sizes) -> np.ndarray:
    """The baseline, no curriculum: w_k = n_k / N (every problem equally likely)."""
    sizes = _sizes(sizes)
    return sizes / sizes.sum()


@register("linear", competence=linear_competence)
def linear(t: float, sizes, *, c0: float = 0.1, duration: float = 0.8) -> np.ndarray:
    """Linear competence: c(t) = min(1, t (1 - c0) / T + c0), then w = competence_weights(c)."""
    return competence_weights(linear_competence(t, c0, duration), sizes)


@register("root-p", competence=root_competence)
def root_p(t: float, sizes, *, p: float = 2.0, c0: float = 0.1, duration: float = 0.8) -> np.ndarray:
    """Root-p competence: c(t) = min(1, (t (1 - c0^p) / T + c0^p)^(1/p)), then w = competence_weights(c)."""
    return competence_weights(root_competence(t, p, c0, duration), sizes)


@register("exp", competence=exp_competence)
def exp(t: float, sizes, *, c0: float = 0.1, duration: float = 0.8) -> np.ndarray:
    """Exponential pacing: c(t) = min(1, c0^(1 - t/T)), then w = competence_weights(c)."""
    return competence_weights(exp_competence(t, c0, duration), sizes)


@register("step")
def step(t: float, sizes, *, duration: float = 0.8) -> np.ndarray:
    """Baby steps: stage s = floor(K t / T); buckets 0..s are open, w_k ∝ n_k for k <= s."""
    sizes = _sizes(sizes)
    present = np.flatnonzero(sizes > 0)
    stage = min(len(present) - 1, math.floor(len(present) * _position(t, duration)))
    weights = np.zeros_like(sizes)
    weights[present[: stage + 1]] = sizes[present[: stage + 1]]
    return _normalize(weights, sizes)


@register("cosine")
def cosine(t: float, sizes, *, duration: float = 1.0) -> np.ndarray:
    """Cosine mixture: λ = (1 - cos(π t/T)) / 2, w_k ∝ (1 - λ)(K - k) + λ (k + 1): easy-heavy to hard-heavy."""
    sizes = _sizes(sizes)
    mix = (1 - math.cos(math.pi * _position(t, duration))) / 2
    k = np.arange(len(sizes))
    return _normalize((1 - mix) * (len(sizes) - k) + mix * (k + 1), sizes)


@register("gaussian")
def gaussian(t: float, sizes, *, width: float = 0.6, floor: float = 0.05, duration: float = 1.0) -> np.ndarray:
    """Moving window: μ = (K - 1) t/T, g_k = exp(-(k - μ)² / 2σ²), w = floor + (1 - K'·floor) g / Σg.

    K' counts the non-empty buckets; the floor keeps every one of them in play (no bucket is starved).
    """
    sizes = _sizes(sizes)
    present = int((sizes > 0).sum())
    if width <= 0 or not 0 <= floor * present <= 1:
        raise ValueError(f"gaussian needs width > 0 and 0 <= floor <= 1/{present}, got {width}, {floor}")
    centre = (len(sizes) - 1) * _position(t, duration)
    bump = np.exp(-((np.arange(len(sizes)) - centre) ** 2) / (2 * width**2))
    bump = _normalize(bump, sizes)
    return _normalize(np.where(sizes > 0, floor + (1 - present * floor) * bump, 0.0), sizes)


def adaptive_update(target: float, reward: float, *, eta: float, alpha: float, beta: float) -> float:
    """AdaRFT (Shi et al. 2025): T' = clip(T + η tanh(α (R - β)), 0, 1), T a difficulty (1 - pass rate).

    A batch that is too easy (R > β) moves the target harder, one too hard moves it easier.
    """
    return float(np.clip(target + eta * math.tanh(alpha * (reward - beta)), 0.0, 1.0))


def adaptive_kernel(pass_rates, target: float, width: float) -> np.ndarray:
    """Preference for problems near the target difficulty: exp(-((1 - p) - T)² / 2σ²)."""
    difficulty = 1.0 - np.asarray(pass_rates, dtype=float)
    return np.exp(-((difficulty - target) ** 2) / (2 * width**2))


@dataclass
class Schedule:
    """A registered pacing function with its options; turns bucket weights into per-problem probabilities."""

    name: str
    fn: ScheduleFn
    options: dict[str, Any] = field(default_factory=dict)

    def weights(self, t: float, sizes) -> np.ndarray:
        return self.fn(t, sizes, **self.options)

    def probabilities(self, t: float, buckets: np.ndarray, num_buckets: int, pass_rates: np.ndarray,
                      preference: np.ndarray) -> np.ndarray:
        """P(i) ∝ q_i · w_b(i) / n_b(i): the schedule's weight spread over its bucket, times the sampler's
        preference q for the problem (1 without online difficulty, so P(bucket k) = w_k; 0 = skip)."""
        eligible = preference > 0
        if not eligible.any():
            return np.zeros(len(buckets))
        sizes = np.bincount(buckets[eligible], minlength=num_buckets)
        weights = self.weights(t, sizes)
        per_problem = np.divide(weights, sizes, out=np.zeros(num_buckets), where=sizes > 0)
        return _to_probabilities(per_problem[buckets] * np.where(eligible, preference, 0.0))

    def observe(self, reward: float) -> None:
        """Pacing functions depend on t only; rewards are ignored."""

    def describe(self, t: float) -> dict[str, float]:
        if self.name in COMPETENCE:
            return {"competence": COMPETENCE[self.name](t, **self.options)}
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class AdaptiveSchedule(Schedule):
    """AdaRFT: keep a target difficulty, move it with each batch's reward, sample problems near it."""

    name: str = "adaptive"
    fn: ScheduleFn | None = None
    target: float = 0.3
    eta: float = 0.05
    alpha: float = 2.0
    beta: float = 0.5
    width: float = 0.15

    def __post_init__(self) -> None:
        if not 0 <= self.target <= 1 or self.width <= 0 or self.eta < 0:
            raise ValueError("adaptive needs 0 <= target <= 1, width > 0 and eta >= 0")
        self.options = {"target": self.target, "eta": self.eta, "alpha": self.alpha, "beta": self.beta,
                        "width": self.width}

    def weights(self, t: float, sizes) -> np.ndarray:
        raise TypeError("adaptive weighs problems, not buckets: use probabilities()")

    def probabilities(self, t, buckets, num_buckets, pass_rates, preference) -> np.ndarray:
        """P(i) ∝ q_i · exp(-((1 - p_i) - T)² / 2σ²)."""
        near = adaptive_kernel(pass_rates, self.target, self.width)
        probabilities = _to_probabilities(np.where(preference > 0, preference, 0.0) * near)
        if probabilities.sum() == 0:  # the kernel underflowed everywhere: fall back to the preference alone
            probabilities = _to_probabilities(np.where(preference > 0, preference, 0.0))
        return probabilities

    def observe(self, reward: float) -> None:
        if not math.isnan(reward):
            self.target = adaptive_update(self.target, reward, eta=self.eta, alpha=self.alpha, beta=self.beta)

    def describe(self, t: float) -> dict[str, float]:
        return {"target": self.target}

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target = float(state["target"])


def _to_probabilities(mass: np.ndarray) -> np.ndarray:
    total = mass.sum()
    return mass / total if total > 0 else mass


def schedule_names() -> list[str]:
    """The registered schedule names, for `--schedule` and recipes."""
    return [*SCHEDULES, "adaptive"]


def get_schedule(name: str, **options) -> Schedule:
    """The schedule registered as `name` (root_p = root-p), with its options checked now, not at the first draw."""
    name = name.strip().lower().replace("_", "-")
    if name == "adaptive":
        try:
            if {"name", "fn", "options"} & set(options):
                raise TypeError(f"unexpected option(s) {sorted({'name', 'fn', 'options'} & set(options))}")
            return AdaptiveSchedule(**options)
        except TypeError as error:
            raise ValueError(f"bad options for schedule 'adaptive': {error}") from error
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of: {', '.join(schedule_names())}")
    schedule = Schedule(name, SCHEDULES[name], dict(options))
    try:
        schedule.weights(0.0, [1, 1])
    except TypeError as error:
        raise ValueError(f"bad options for schedule {name!r}: {error}") from error
    return schedule
