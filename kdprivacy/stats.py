"""Small statistics shared by the attack metrics, memorization, inheritance and utility: average ranks,
seeded bootstrap means and percentile intervals, and the normal approximation of an unpaired difference from
two 95% intervals.

Each helper is written once here so that every table computes an interval the same way; the random draws
(``rng.integers`` on the caller's generator) are part of the contract, so the same seed gives the same
interval wherever it is used.
"""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal."""


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


def bootstrap_mean_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Seeded percentile bootstrap CI of a mean; ``(nan, nan)`` for no values or ``n_boot == 0``."""
    if n_boot < 0:
        raise ValueError("n_boot must be >= 0")
    if n_boot == 0:
        return float("nan"), float("nan")
    return percentile_ci(bootstrap_means(values, n_boot, np.random.default_rng(seed)), level)


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
