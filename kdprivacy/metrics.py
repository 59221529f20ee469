"""Membership-inference metrics: ROC AUC, ROC curve, TPR at low FPR, bootstrap CIs.

Conventions: ``labels`` are 1 for members and 0 for non-members; a higher score means "more likely member"
(see :mod:`kdprivacy.attacks`). Scores are used as given: an AUC below 0.5 is reported as is, never replaced
by ``1 - AUC`` (pitfalls.md). NaN scores are an error (no silent drops); ``+-inf`` are ordinary values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd


def _validate(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} NaN score(s): every example must have a score")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (non-member) or 1 (member)")
    y = y.astype(np.int64)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("need at least one member and one non-member")
    return s, y


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


def roc_auc(scores, labels) -> float:
    """ROC AUC = Mann-Whitney U / (n1 n0) with average ranks for ties (a tie counts 1/2). Never flipped."""
    s, y = _validate(scores, labels)
    n1 = int(y.sum())
    n0 = y.size - n1
    rank_sum = average_ranks(s)[y == 1].sum()
    return float((rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``; predict "member" when ``score >= threshold``.

    Thresholds are the distinct scores in decreasing order, preceded by ``+inf`` (the point (0, 0)), as in
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.
    """
    s, y = _validate(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_run = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    n1 = tps[-1]
    n0 = fps[-1]
    fpr = np.r_[0.0, fps / n0]
    tpr = np.r_[0.0, tps / n1]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    return fpr, tpr, thresholds


def tpr_at_fpr(scores, labels, fpr: float) -> float:
    """Largest TPR over thresholds whose FPR <= ``fpr``.

    NaN when there are fewer than ``1 / fpr`` non-members: such an FPR cannot be resolved (pitfalls.md:
    never report a TPR at an FPR below 1/#non-members), e.g. 0.1% needs >= 1000 non-members.
    """
    if not 0 < fpr <= 1:
        raise ValueError(f"fpr must be in (0, 1], got {fpr}")
    s, y = _validate(scores, labels)
    n0 = int((y == 0).sum())
    if n0 * fpr < 1 - 1e-9:
        return math.nan
    fprs, tprs, _ = roc_curve(s, y)
    return float(tprs[fprs <= fpr + 1e-12].max())


def bootstrap_auc_ci(
    scores, labels, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC.

    Stratified: each replicate resamples members and non-members separately with replacement (class sizes
    fixed, so every replicate has both classes). Deterministic for a given ``seed``.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    s, y = _validate(scores, labels)
    members = s[y == 1]
    nonmembers = s[y == 0]
    rng = np.random.default_rng(seed)
    n1, n0 = members.size, nonmembers.size
    aucs = np.empty(n_boot)
    for b in range(n_boot):
        sample = np.r_[members[rng.integers(0, n1, n1)], nonmembers[rng.integers(0, n0, n0)]]
        rank_sum = average_ranks(sample)[:n1].sum()
        aucs[b] = (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    alpha = (1 - level) / 2
    low, high = np.quantile(aucs, [alpha, 1 - alpha])
    return float(low), float(high)


def tpr_column(fpr: float) -> str:
    """Column name for a target FPR: ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.001``."""
    return f"tpr_at_fpr_{fpr:g}"


def summarize_attacks(
    attack_scores: pd.DataFrame,
    fprs: Sequence[float] = (0.01, 0.001),
    n_bootstrap: int = 0,
    bootstrap_seed: int = 0,
    ci_level: float = 0.95,
) -> pd.DataFrame:
    """One row per attack (first-appearance order) from a long table ``attack, score, label`` (+ ``id``).

    Columns: ``attack, auc, auc_ci_low, auc_ci_high, tpr_at_fpr_<f>..., n_members, n_nonmembers``. The CI
    columns are NaN when ``n_bootstrap == 0``. When an ``id`` column is present, every attack must score
    exactly the same ids, each once.
    """
    for column in ("attack", "score", "label"):
        if column not in attack_scores.columns:
            raise ValueError(f"attack score table lacks column {column!r}")
    attacks = list(dict.fromkeys(attack_scores["attack"]))
    if "id" in attack_scores.columns:
        reference_ids = None
        for name in attacks:
            ids = attack_scores.loc[attack_scores["attack"] == name, "id"]
            if ids.duplicated().any():
                raise ValueError(f"attack {name}: an id is scored twice")
            id_set = set(ids)
            if reference_ids is None:
                reference_ids = id_set
            elif id_set != reference_ids:
                raise ValueError(f"attack {name} scores different examples than attack {attacks[0]}")
    rows = []
    for name in attacks:
        part = attack_scores[attack_scores["attack"] == name]
        s = part["score"].to_numpy(dtype=np.float64)
        y = part["label"].to_numpy()
        row = {"attack": name, "auc": roc_auc(s, y)}
        if n_bootstrap > 0:
            low, high = bootstrap_auc_ci(s, y, n_bootstrap, bootstrap_seed, ci_level)
            row["auc_ci_low"], row["auc_ci_high"] = low, high
        else:
            row["auc_ci_low"] = row["auc_ci_high"] = math.nan
        for fpr in fprs:
            row[tpr_column(fpr)] = tpr_at_fpr(s, y, fpr)
        row["n_members"] = int((y == 1).sum())
        row["n_nonmembers"] = int((y == 0).sum())
        rows.append(row)
    columns = ["attack", "auc", "auc_ci_low", "auc_ci_high", *[tpr_column(f) for f in fprs], "n_members",
               "n_nonmembers"]
    return pd.DataFrame(rows, columns=columns)
