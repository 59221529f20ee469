import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from kdprivacy import metrics


def tied_data(seed, n=300):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.normal(size=n) + 0.4 * labels, 1)  # rounding creates many ties
    return scores, labels


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    scores, labels = tied_data(seed)
    assert metrics.roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_roc_curve_matches_sklearn(seed):
    scores, labels = tied_data(seed)
    fpr, tpr, thr = metrics.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert thr[0] == np.inf


def test_auc_below_half_is_not_flipped():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([1, 1, 0, 1, 0, 0])  # members mostly score lower
    auc = metrics.roc_auc(scores, labels)
    assert auc < 0.5
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    assert auc == pytest.approx(1 / 9)


def test_all_tied_is_half():
    assert metrics.roc_auc([1.0] * 6, [1, 0, 1, 0, 1, 0]) == 0.5


def test_tpr_at_fpr_hand_case():
    # 100 non-members 0..99 (scores 0.00..0.99), 4 members at 0.995, 0.985, 0.5, 0.1.
    nonmembers = np.arange(100) / 100.0
    members = np.array([0.995, 0.985, 0.5, 0.1])
    scores = np.r_[members, nonmembers]
    labels = np.r_[np.ones(4), np.zeros(100)]
    # Threshold 0.985 flags one non-member (0.99; FPR 1/100) and members 0.995, 0.985 -> TPR 0.5;
    # the next threshold (0.98) would reach FPR 2/100.
    assert metrics.tpr_at_fpr(scores, labels, 0.01) == pytest.approx(0.5)
    # FPR <= 2%: threshold 0.98 adds non-member 0.98 -> still 2 members.
    assert metrics.tpr_at_fpr(scores, labels, 0.02) == pytest.approx(0.5)
    # FPR 0.1% needs >= 1000 non-members: not resolvable with 100.
    assert math.isnan(metrics.tpr_at_fpr(scores, labels, 0.001))


def test_tpr_at_fpr_nan_threshold_boundary():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(50), np.zeros(1000)]
    scores = rng.normal(size=1050)
    assert not math.isnan(metrics.tpr_at_fpr(scores, labels, 0.001))  # exactly 1/fpr non-members
    assert math.isnan(metrics.tpr_at_fpr(scores[1:], labels[1:], 0.0005))
    assert math.isnan(metrics.tpr_at_fpr(scores[:-1], labels[:-1], 0.001))  # 999 < 1000


def test_tpr_at_fpr_matches_sklearn_curve():
    scores, labels = tied_data(7, n=2000)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    expected = sk_tpr[sk_fpr <= 0.01].max()
    assert metrics.tpr_at_fpr(scores, labels, 0.01) == pytest.approx(expected)


def test_errors():
    with pytest.raises(ValueError, match="NaN"):
        metrics.roc_auc([0.1, math.nan], [1, 0])
    with pytest.raises(ValueError, match="member"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        metrics.roc_auc([0.1, 0.2], [1, 2])


def test_bootstrap_ci_deterministic_and_brackets():
    scores, labels = tied_data(3, n=400)
    a = metrics.bootstrap_auc_ci(scores, labels, n_boot=200, seed=1)
    b = metrics.bootstrap_auc_ci(scores, labels, n_boot=200, seed=1)
    assert a == b
    assert a[0] < metrics.roc_auc(scores, labels) < a[1]
    assert a != metrics.bootstrap_auc_ci(scores, labels, n_boot=200, seed=2)


def test_summarize_attacks():
    scores, labels = tied_data(4, n=300)
    ids = [f"x{i}" for i in range(300)]
    frame = pd.concat(
        [
            pd.DataFrame({"id": ids, "attack": "loss", "score": scores, "label": labels}),
            pd.DataFrame({"id": ids, "attack": "neg", "score": -scores, "label": labels}),
        ]
    )
    out = metrics.summarize_attacks(frame, fprs=(0.01, 0.001), n_bootstrap=50, bootstrap_seed=0)
    assert list(out.columns) == [
        "attack", "auc", "auc_ci_low", "auc_ci_high", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001",
        "n_members", "n_nonmembers",
    ]
    assert out.attack.tolist() == ["loss", "neg"]
    auc = roc_auc_score(labels, scores)
    assert out.auc.tolist() == pytest.approx([auc, 1 - auc])  # the "neg" attack stays below 0.5
    assert out["tpr_at_fpr_0.001"].isna().all()  # ~150 non-members < 1000
    assert (labels == 0).sum() >= 100 and out["tpr_at_fpr_0.01"].notna().all()
    assert out.n_members.tolist() == [int(labels.sum())] * 2
    assert out.n_nonmembers.tolist() == [int((labels == 0).sum())] * 2
    no_ci = metrics.summarize_attacks(frame)
    assert no_ci.auc_ci_low.isna().all()


def test_summarize_refuses_different_examples_per_attack():
    frame = pd.DataFrame(
        {"id": ["a", "b", "a", "c"], "attack": ["loss", "loss", "zlib", "zlib"], "score": [1, 2, 1, 2],
         "label": [1, 0, 1, 0]}
    )
    with pytest.raises(ValueError, match="different examples"):
        metrics.summarize_attacks(frame)
