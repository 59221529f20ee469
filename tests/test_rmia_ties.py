"""RMIA's low-FPR numbers under ties (#15.7): the dominated fraction takes at most |Z| + 1 values, so the
top of the score is one tied block; ties are ordered by the likelihood ratio, never reordering counts."""

import numpy as np
import pytest

from kdprivacy.mia import attacks, metrics


def _case(n=1000, n_z=10, seed=0):
    rng = np.random.default_rng(seed)
    lr_z = rng.normal(0.0, 1.0, n_z)
    members, nonmembers = rng.normal(2.0, 1.0, n), rng.normal(0.0, 1.0, n)
    return np.concatenate([members, nonmembers]), lr_z, np.r_[np.ones(n), np.zeros(n)].astype(int)


def test_ties_no_longer_crush_tpr_at_low_fpr():
    x, z, y = _case()
    untied = attacks.rmia_from_ratios(x, z)
    tied = attacks.rmia_tie_broken(x, z)
    top = untied == untied.max()
    assert (y[top] == 0).sum() > 0.01 * (y == 0).sum()  # more non-members in the top block than 1% FPR allows
    assert metrics.tpr_at_fpr(untied, y, 0.01) == 0.0  # the defect: an attack with AUC ~0.9 shows TPR 0
    assert metrics.roc_auc(untied, y) > 0.85
    # broken by LR(x): the ranking is that of LR(x) itself, so are the AUC and the TPR
    assert metrics.tpr_at_fpr(tied, y, 0.01) == pytest.approx(metrics.tpr_at_fpr(x, y, 0.01))
    assert metrics.tpr_at_fpr(tied, y, 0.01) > 0.2
    assert metrics.roc_auc(tied, y) == pytest.approx(metrics.roc_auc(x, y))


@pytest.mark.parametrize("gamma", [1.0, 0.7, 2.5])
def test_tie_break_never_reorders_counts_and_stays_in_unit_interval(gamma):
    x, z, _ = _case(n=300, n_z=7, seed=1)
    untied, tied = attacks.rmia_from_ratios(x, z, gamma), attacks.rmia_tie_broken(x, z, gamma)
    hi, lo = np.meshgrid(untied, untied, indexing="ij")
    t_hi, t_lo = np.meshgrid(tied, tied, indexing="ij")
    assert (t_hi[hi > lo] > t_lo[hi > lo]).all()
    assert ((tied > 0) & (tied < 1)).all()


def test_degenerate_cases():
    z = np.array([0.0])  # a population of one
    x = np.array([-1.0, 1.0, 1.0, np.nan])
    out = attacks.rmia_tie_broken(x, z)
    assert np.isnan(out[3]) and out[1] == out[2] > out[0]  # equal LR stays tied; NaN stays NaN
    same = attacks.rmia_tie_broken(np.zeros(5), np.zeros(3))  # everything equal: one tie, no error
    assert np.ptp(same) == 0 and np.isfinite(same).all()
    with pytest.raises(ValueError, match="non-empty population"):
        attacks.rmia_tie_broken(x, np.array([]))
