"""Small statistics shared by the attack metrics, memorization, inheritance and utility: average ranks,
seeded bootstrap means and percentile intervals, and the normal approximation of an unpaired difference from
two 95% intervals; :class:`Bootstrap`, the one settings object of every seeded interval (how many
replicates, their seed, the level).

Each helper is written once here so that every table computes an interval the same way; the random draws
(``rng.integers`` on the caller's generator) are part of the contract, so the same seed gives the same
interval wherever it is used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdprivacy.config import Attacks

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal."""


@dataclass(frozen=True)
class Bootstrap:
    """The settings of a seeded percentile bootstrap: ``n`` replicates (``0`` = no intervals, NaN), drawn
    from ``numpy.random.default_rng(seed)``, ``level`` the interval's coverage.

    The defaults are the config's (``attacks.n_bootstrap``, ``attacks.bootstrap_seed``: their one home);
    :data:`NO_BOOTSTRAP` is the "point estimates only" setting.
    """

    n: int = Attacks.model_fields["n_bootstrap"].default
    seed: int = Attacks.model_fields["bootstrap_seed"].default
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("the number of bootstrap replicates must be >= 0")
        if not 0 < self.level < 1:
            raise ValueError("level must be in (0, 1)")

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> Bootstrap:
        """From a job's ``cfg`` keys ``n_bootstrap`` and ``bootstrap_seed`` (the level stays 0.95)."""
        return cls(n=int(cfg["n_bootstrap"]), seed=int(cfg["bootstrap_seed"]))


NO_BOOTSTRAP = Bootstrap(n=0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the average of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start of each run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], values.size]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def bootstrap_means(values, n_boot: int, rng: np.random.Generator, chunk: int = 1 << 22) -> np.ndarray:
    """``n_boot`` means of same-size resamples (with replacement) of ``values``; memory ~ ``chunk``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return np.full(n_boot, np.nan)
    out = np.empty(n_boot)
    rows = max(1, chunk // x.size)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        out[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    return out


def percentile_ci(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (NaN, NaN when there are none or any is NaN)."""
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    if replicates.size == 0 or np.isnan(replicates).any():
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_mean_ci(values, bootstrap: Bootstrap = Bootstrap()) -> tuple[float, float]:
    """Seeded percentile bootstrap CI of a mean; ``(nan, nan)`` for no values or ``bootstrap.n == 0``."""
    if bootstrap.n == 0:
        return float("nan"), float("nan")
    return percentile_ci(bootstrap_means(values, bootstrap.n, np.random.default_rng(bootstrap.seed)),
                         bootstrap.level)


def se_from_ci(low: float, high: float) -> float:
    return (high - low) / (2 * Z95)


def approx_diff_ci(
    a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float
) -> tuple[float, float]:
    """Normal-approximation interval of ``a - b`` from two independent 95% intervals (NaN if one lacks)."""
    if any(math.isnan(x) for x in (a, a_lo, a_hi, b, b_lo, b_hi)):
        return math.nan, math.nan
    half = Z95 * math.hypot(se_from_ci(a_lo, a_hi), se_from_ci(b_lo, b_hi))
    return a - b - half, a - b + half
