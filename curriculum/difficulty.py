"""Online difficulty: a Beta posterior over each problem's pass rate, updated from every GRPO group.

The score gives a prior; every group of G completions of a problem during training is a fresh Binomial
sample of its *current* pass rate. Two things keep the estimate current as the model learns:
- a shared logit shift δ, fitted online to how every observed group beat or missed its prior, moves the
  prior of every problem, seen or not (the model improves on the whole set, not only on what it drew);
- a problem's older evidence (its score too) is discounted by `decay` at each new group of it, so the
  estimate follows the model.
The posterior gives, in closed form, the probability that a whole group of G passes or fails alike,
which is exactly the chance that GRPO gets zero advantage from the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Pseudo-rollouts behind a pass rate whose rollouts are unknown (n = 0 in the buckets dataset).
UNKNOWN_TRIALS = 4.0


class OnlineDifficulty:
    """Per-problem Beta(α, β): α = 1 + m·μ + s, β = 1 + m·(1 - μ) + f, with μ = σ(logit p̃ + δ).

    p̃ is the scored pass rate shrunk by its own rollouts ((1 + k) / (2 + n), finite for 0/n and n/n),
    m = min(n, prior_strength)·decay^(groups seen) the prior's weight, δ the shared shift, s and f the
    discounted successes and failures seen in training.

    Args:
        pass_rates: scored pass rate per problem.
        trials: rollouts behind each score (n); None treats every score as `prior_strength` rollouts, and
            n = 0 (a pass rate shipped with the data) as `UNKNOWN_TRIALS`.
        prior_strength: cap on the prior's weight in pseudo-rollouts.
        decay: weight kept by a problem's older evidence (score included) at each new group (1 = never forget).
        drift_rate: step size of the shift's damped Newton update per batch (0 = no shared shift).
    """

    def __init__(self, pass_rates: Sequence[float], trials: Sequence[float] | None = None, *,
                 prior_strength: float = 16.0, decay: float = 0.5, drift_rate: float = 0.3):
        pass_rates = np.asarray(pass_rates, dtype=float)
        if pass_rates.ndim != 1 or np.isnan(pass_rates).any() or (pass_rates < 0).any() or (pass_rates > 1).any():
            raise ValueError("pass rates must be a list of numbers in [0, 1]")
        if prior_strength < 0 or not 0 < decay <= 1 or drift_rate < 0:
            raise ValueError(f"need prior_strength >= 0, 0 < decay <= 1 and drift_rate >= 0, "
                             f"got {prior_strength}, {decay}, {drift_rate}")
        rollouts = np.full(len(pass_rates), float(prior_strength)) if trials is None else np.asarray(
            trials, dtype=float)
        # n = 0: a pass rate shipped with the data (`build --difficulty-column`), measured by some other
        # model on an unknown number of rollouts: a weak prior around it, not no prior at all.
        rollouts = np.where(rollouts > 0, rollouts, min(UNKNOWN_TRIALS, prior_strength))
        shrunk = (1.0 + rollouts * pass_rates) / (2.0 + rollouts)
        self.prior_logit = np.log(shrunk / (1.0 - shrunk))
        self.weight = np.minimum(rollouts, prior_strength)
        self.decay = decay
        self.drift_rate = drift_rate
        self.shift = 0.0
        self.successes = np.zeros(len(pass_rates))
        self.failures = np.zeros(len(pass_rates))
        self.observations = np.zeros(len(pass_rates), dtype=np.int64)
        self._posterior: tuple[np.ndarray, np.ndarray] | None = None
        self._posterior_shift = 0.0
        self._agreement: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.prior_logit)

    def prior_mean(self, indices=slice(None)) -> np.ndarray:
        """μ = σ(logit p̃ + δ): the score moved by what the model has learned on the whole set."""
        return 1.0 / (1.0 + np.exp(-(self.prior_logit[indices] + self.shift)))

    def prior_weight(self) -> np.ndarray:
        """m · decay^(groups seen): the score is old evidence too, discounted like the rest."""
        return self.weight * self.decay ** self.observations

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) for every problem, recomputed only after new evidence."""
        if self._posterior is None or self._posterior_shift != self.shift:
            weight, mean = self.prior_weight(), self.prior_mean()
            self._posterior = (1.0 + weight * mean + self.successes, 1.0 + weight * (1.0 - mean) + self.failures)
            self._posterior_shift = self.shift
            self._agreement = {}
        return self._posterior

    @property
    def alpha(self) -> np.ndarray:
        return self.posterior()[0]

    @property
    def beta(self) -> np.ndarray:
        return self.posterior()[1]

    def mean(self) -> np.ndarray:
        """The current pass-rate estimate E[p] = α / (α + β)."""
        alpha, beta = self.posterior()
        return alpha / (alpha + beta)

    def update(self, indices: Sequence[int], successes: Sequence[float], trials: Sequence[float]) -> None:
        """Add one batch of groups: `successes[i]` passes out of `trials[i]` for problem `indices[i]`.

        The shift takes one damped Newton step on the batch's Binomial log-likelihood:
        δ += rate · Σ (k - n μ) / Σ n μ (1 - μ).
        """
        index = np.asarray(indices, dtype=np.int64)
        passed, total = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
        if len(index) != len(passed) or len(index) != len(total):
            raise ValueError("indices, successes and trials must have the same length")
        bad = np.flatnonzero((passed < 0) | (passed > total))
        if len(bad):
            raise ValueError(f"problem {index[bad[0]]}: {passed[bad[0]]} successes out of {total[bad[0]]} trials")
        if self.drift_rate > 0 and len(index):
            expected = self.prior_mean(index)
            curvature = float(np.sum(total * expected * (1.0 - expected)))
            if curvature > 0:
                self.shift += self.drift_rate * float(np.sum(passed - total * expected)) / curvature
        for i, k, n in zip(index, passed, total, strict=True):  # a loop: one problem may repeat in a batch
            self.successes[i] = self.decay * self.successes[i] + k
            self.failures[i] = self.decay * self.failures[i] + (n - k)
            self.observations[i] += 1
        self._posterior = None

    def all_pass_probability(self, group_size: int) -> np.ndarray:
        """E[p^G] = Π_{i<G} (α + i) / (α + β + i): the chance a whole group of G passes."""
        return self._group_agreement(group_size)[0]

    def all_fail_probability(self, group_size: int) -> np.ndarray:
        """E[(1 - p)^G] = Π_{i<G} (β + i) / (α + β + i): the chance a whole group of G fails."""
        return self._group_agreement(group_size)[1]

    def informativeness(self, group_size: int) -> np.ndarray:
        """1 - E[p^G] - E[(1 - p)^G]: the chance a group of G has a non-zero advantage."""
        all_pass, all_fail = self._group_agreement(group_size)
        return np.clip(1.0 - all_pass - all_fail, 0.0, 1.0)

    def _group_agreement(self, group_size: int) -> tuple[np.ndarray, np.ndarray]:
        alpha, beta = self.posterior()  # refreshes the cache after new evidence
        if group_size not in self._agreement:
            self._agreement[group_size] = (_rising_ratio(alpha, alpha + beta, group_size),
                                           _rising_ratio(beta, alpha + beta, group_size))
        return self._agreement[group_size]

    def state_dict(self) -> dict[str, Any]:
        return {"shift": self.shift, "successes": self.successes.tolist(), "failures": self.failures.tolist(),
                "observations": self.observations.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["successes"]) != len(self):
            raise ValueError(f"online difficulty state holds {len(state['successes'])} problems, "
                             f"this dataset {len(self)}: was it saved for another dataset?")
        self.shift = float(state["shift"])
        self.successes = np.asarray(state["successes"], dtype=float)
        self.failures = np.asarray(state["failures"], dtype=float)
        self.observations = np.asarray(state["observations"], dtype=np.int64)
        self._posterior = None


def _rising_ratio(top: np.ndarray, bottom: np.ndarray, count: int) -> np.ndarray:
    """Π_{i<count} (top + i) / (bottom + i), elementwise."""
    result = np.ones_like(top, dtype=float)
    for i in range(count):
        result *= (top + i) / (bottom + i)
    return result
