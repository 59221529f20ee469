"""The shared statistics helpers: average ranks, seeded bootstrap means and percentile intervals."""

from __future__ import annotations

import numpy as np
import pytest

from kdprivacy import stats


def test_bootstrap_mean_ci():
    values = np.arange(100, dtype=float)
    low, high = stats.bootstrap_mean_ci(values, stats.Bootstrap(n=500, seed=1))
    assert low < values.mean() < high
    assert (low, high) == stats.bootstrap_mean_ci(values, stats.Bootstrap(n=500, seed=1))
    assert stats.bootstrap_mean_ci(np.ones(5), stats.Bootstrap(n=50)) == (1.0, 1.0)
    assert all(np.isnan(stats.bootstrap_mean_ci(values, stats.NO_BOOTSTRAP)))
    assert all(np.isnan(stats.bootstrap_mean_ci([], stats.Bootstrap(n=10))))


def test_bootstrap_settings_default_to_the_config():
    from kdprivacy.config import Attacks

    default = stats.Bootstrap()
    assert (default.n, default.seed, default.level) == (Attacks().n_bootstrap, Attacks().bootstrap_seed, 0.95)
    assert stats.Bootstrap.from_cfg({"n_bootstrap": 7, "bootstrap_seed": 3}) == stats.Bootstrap(7, 3)
    with pytest.raises(ValueError, match=">= 0"):
        stats.Bootstrap(n=-1)
    with pytest.raises(ValueError, match="level"):
        stats.Bootstrap(level=1.0)


def test_bootstrap_means_draw_from_the_callers_generator_in_chunks():
    values = np.arange(7, dtype=float)
    whole = stats.bootstrap_means(values, 50, np.random.default_rng(3))
    chunked = stats.bootstrap_means(values, 50, np.random.default_rng(3), chunk=7 * 4)  # 4 replicates a draw
    rng = np.random.default_rng(3)
    expected = values[rng.integers(0, 7, size=(50, 7))].mean(axis=1)
    assert np.array_equal(whole, expected) and np.array_equal(chunked, expected)
    assert np.isnan(stats.bootstrap_means([], 3, np.random.default_rng(0))).all()


def test_percentile_ci():
    reps = np.arange(101, dtype=float)
    assert stats.percentile_ci(reps, 0.9) == pytest.approx((5.0, 95.0))
    assert all(np.isnan(stats.percentile_ci(np.array([1.0, np.nan]))))
    assert all(np.isnan(stats.percentile_ci(np.array([]))))
    with pytest.raises(ValueError, match="level"):
        stats.percentile_ci(reps, 1.0)


def test_average_ranks_share_ties():
    assert stats.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert stats.average_ranks(np.array([5.0])).tolist() == [1.0]
