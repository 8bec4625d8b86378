"""Online difficulty: a Beta posterior over each problem's pass rate, updated from every GRPO group.

The score gives a prior; every group of G completions of a problem during training is a fresh Binomial
sample of its *current* pass rate. Evidence can be discounted (`decay`) so the estimate follows the
model as it learns. The posterior gives, in closed form, the probability that a whole group of G passes
or fails alike, which is exactly the chance that GRPO gets zero advantage from the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class OnlineDifficulty:
    """Per-problem Beta(α, β) over the pass rate: α = 1 + m·p0 + s, β = 1 + m·(1 - p0) + f.

    p0 is the scored pass rate and m = min(n scored, prior_strength) its weight, so that a score from 64
    rollouts still yields to what training shows; s and f are the successes and failures seen since.
    """

    def __init__(self, pass_rates: Sequence[float], trials: Sequence[float] | None = None, *,
                 prior_strength: float = 8.0, decay: float = 1.0, drift_rate: float = 0.0):
        pass_rates = np.asarray(pass_rates, dtype=float)
        if pass_rates.ndim != 1 or np.isnan(pass_rates).any() or (pass_rates < 0).any() or (pass_rates > 1).any():
            raise ValueError("pass rates must be a list of numbers in [0, 1]")
        if prior_strength < 0 or not 0 < decay <= 1:
            raise ValueError(f"need prior_strength >= 0 and 0 < decay <= 1, got {prior_strength}, {decay}")
        weight = np.full(len(pass_rates), float(prior_strength))
        if trials is not None:
            weight = np.minimum(np.asarray(trials, dtype=float), weight)
        self.weight = weight
        # the score on the logit scale, shrunk by its own rollouts so 0/n and n/n stay finite
        shrunk = (1.0 + (trials if trials is not None else weight) * pass_rates) / (
            2.0 + (np.asarray(trials, dtype=float) if trials is not None else weight))
        self.prior_logit = np.log(shrunk / (1 - shrunk))
        self.shift = 0.0
        self.drift_rate = drift_rate
        self.decay = decay
        self.successes = np.zeros(len(pass_rates))
        self.failures = np.zeros(len(pass_rates))
        self.observations = np.zeros(len(pass_rates), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.prior_logit)

    def prior_mean(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.prior_logit + self.shift)))

    @property
    def alpha(self) -> np.ndarray:
        return 1.0 + self.weight * self.prior_mean() + self.successes

    @property
    def beta(self) -> np.ndarray:
        return 1.0 + self.weight * (1.0 - self.prior_mean()) + self.failures

    def mean(self) -> np.ndarray:
        """The current pass-rate estimate E[p] = α / (α + β)."""
        return self.alpha / (self.alpha + self.beta)

    def update(self, indices: Sequence[int], successes: Sequence[float], trials: Sequence[float]) -> None:
        """Add one group's outcome per entry: `successes` passes out of `trials` for problem `indices[i]`."""
        if self.drift_rate > 0:
            index = np.asarray(indices, dtype=np.int64)
            passed, total = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
            expected = 1.0 / (1.0 + np.exp(-(self.prior_logit[index] + self.shift)))
            curvature = float(np.sum(total * expected * (1 - expected)))
            if curvature > 0:
                self.shift += self.drift_rate * float(np.sum(passed - total * expected)) / curvature
        for index, passed, total in zip(indices, successes, trials, strict=True):
            if not 0 <= passed <= total:
                raise ValueError(f"problem {index}: {passed} successes out of {total} trials")
            self.successes[index] = self.decay * self.successes[index] + passed
            self.failures[index] = self.decay * self.failures[index] + (total - passed)
            self.observations[index] += 1

    def all_pass_probability(self, group_size: int) -> np.ndarray:
        """E[p^G] = Π_{i<G} (α + i) / (α + β + i): the chance a whole group of G passes."""
        return _rising_ratio(self.alpha, self.alpha + self.beta, group_size)

    def all_fail_probability(self, group_size: int) -> np.ndarray:
        """E[(1 - p)^G] = Π_{i<G} (β + i) / (α + β + i)."""
        return _rising_ratio(self.beta, self.alpha + self.beta, group_size)

    def informativeness(self, group_size: int) -> np.ndarray:
        """1 - E[p^G] - E[(1 - p)^G]: the chance a group of G has a non-zero advantage."""
        return np.clip(1.0 - self.all_pass_probability(group_size) - self.all_fail_probability(group_size), 0, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"successes": self.successes.tolist(), "failures": self.failures.tolist(),
                "observations": self.observations.tolist(), "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["successes"]) != len(self):
            raise ValueError(f"online difficulty state holds {len(state['successes'])} problems, "
                             f"this dataset {len(self)}: was it saved for another dataset?")
        self.successes = np.asarray(state["successes"], dtype=float)
        self.failures = np.asarray(state["failures"], dtype=float)
        self.observations = np.asarray(state["observations"], dtype=np.int64)


def _rising_ratio(top: np.ndarray, bottom: np.ndarray, count: int) -> np.ndarray:
    result = np.ones_like(top, dtype=float)
    for i in range(count):
        result *= (top + i) / (bottom + i)
    return result
