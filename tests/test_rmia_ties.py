"""RMIA's low-FPR numbers under ties (#15.7): the dominated fraction takes at most |Z| + 1 values, so the
top of the score is one tied block; ties are ordered by the likelihood ratio, never reordering counts."""

import numpy as np
import pandas as pd
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


def _score_table(ids, nll):
    """One token per example whose log-probability is ``-nll`` (a score table as score_model writes)."""
    one = [np.array([0.0], dtype=np.float32)] * len(ids)
    return pd.DataFrame({"id": ids, "n_tokens": 1,
                         "token_logprobs": [np.array([-v], dtype=np.float32) for v in nll],
                         "token_mu": one, "token_sigma": one})


def test_ties_end_to_end_through_compute_attacks():
    """The demo's shape through the attack job's function: 200 vs 200 examples, a 10-example population,
    one reference: the untied fraction's TPR at 1% FPR is 0 at a high AUC; the shipped score's is the LR's."""
    rng = np.random.default_rng(3)
    n, n_z = 200, 10
    ids = [f"m{i}" for i in range(n)] + [f"n{i}" for i in range(n)]
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    ref_nll = rng.uniform(2.0, 4.0, 2 * n)
    target_nll = ref_nll - np.where(y == 1, rng.normal(1.5, 0.5, 2 * n), rng.normal(0.0, 0.5, 2 * n))
    z_ref = rng.uniform(2.0, 4.0, n_z)
    z_target = z_ref - rng.normal(0.0, 0.5, n_z)
    z_ids = [f"z{i}" for i in range(n_z)]
    out = attacks.compute_attacks(
        _score_table(ids, target_nll), {}, ["rmia"], references={"ext": _score_table(ids, ref_nll)},
        population=_score_table(z_ids, z_target), reference_populations={"ext": _score_table(z_ids, z_ref)},
    )
    score = out.set_index("id").loc[ids, "score"].to_numpy()
    log_lr = ref_nll.astype(np.float32).astype(float) - target_nll.astype(np.float32).astype(float)
    log_lr_z = z_ref.astype(np.float32).astype(float) - z_target.astype(np.float32).astype(float)
    untied = attacks.rmia_from_ratios(log_lr, log_lr_z)
    assert metrics.roc_auc(untied, y) > 0.9
    assert metrics.tpr_at_fpr(untied, y, 0.01) == 0.0  # what the old score reported
    assert metrics.tpr_at_fpr(score, y, 0.01) > 0.3
    assert metrics.tpr_at_fpr(score, y, 0.01) == pytest.approx(metrics.tpr_at_fpr(log_lr, y, 0.01))
