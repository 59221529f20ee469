"""Membership-inference metrics: ROC AUC, TPR at low FPR, bootstrap CIs, paired differences, seed pooling.

Conventions: ``labels`` are 1 for members and 0 for non-members; a higher score means "more likely member"
(see :mod:`kdprivacy.mia.attacks`). Scores are used as given: an AUC below 0.5 is reported as is, never replaced
by ``1 - AUC`` (pitfalls.md). NaN scores are an error (no silent drops); ``+-inf`` are ordinary values.

- AUC = Mann-Whitney U / (n1 n0), ties count 1/2 (= the trapezoidal area under the full ROC curve).
- TPR at FPR ``f`` = the largest TPR over thresholds whose FPR <= ``f``; **NaN when there are fewer than
  1/f non-members** (pitfalls.md: never report a TPR at an FPR below 1/#non-members), and its CI too.
- Bootstrap (percentile, seeded, *stratified*): every replicate draws ``n1`` members and ``n0`` non-members
  with replacement (members first, then non-members, with one ``numpy.random.default_rng(seed)``), so each
  replicate has both classes and the same class sizes. Replicates are computed from per-example
  multiplicities (weighted counts on the sorted distinct scores), which gives exactly the metric of the
  resampled data without re-sorting.
- Paired bootstrap (:func:`paired_bootstrap`): two score vectors on the *same* examples are resampled with
  the *same* example draws, so the CI of the difference reflects only what differs between the methods.
  ``p_value`` = ``min(1, 2 min(P*(d <= 0), P*(d >= 0)))`` over the replicates ``d`` of the difference: a
  two-sided bootstrap "p-value" (how often the resampled difference lands on the other side of zero);
  with ``n_boot`` replicates it cannot resolve values below ``2 / n_boot``.
- Seed pooling (:func:`pool_seeds`): per-seed rows and, per group, the mean over training seeds with the
  spread (sample std, min, max), so a method difference can be compared with seed-to-seed variation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from kdprivacy import stats
from kdprivacy.config import Attacks
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap

DEFAULT_FPRS = tuple(Attacks.model_fields["fprs"].default)  # the config's default (its one home)


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


def roc_auc(scores, labels) -> float:
    """ROC AUC = Mann-Whitney U / (n1 n0) with average ranks for ties (a tie counts 1/2). Never flipped."""
    s, y = _validate(scores, labels)
    n1 = int(y.sum())
    n0 = y.size - n1
    rank_sum = stats.average_ranks(s)[y == 1].sum()
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


def resolvable(n_nonmembers: int, fpr: float) -> bool:
    """Whether an FPR can be reported with ``n_nonmembers`` non-members (``n0 >= 1 / fpr``)."""
    return n_nonmembers * fpr >= 1 - 1e-9


def tpr_at_fpr(scores, labels, fpr: float) -> float:
    """Largest TPR over thresholds whose FPR <= ``fpr``.

    NaN when there are fewer than ``1 / fpr`` non-members: such an FPR cannot be resolved (pitfalls.md:
    never report a TPR at an FPR below 1/#non-members), e.g. 0.1% needs >= 1000 non-members.
    """
    if not 0 < fpr <= 1:
        raise ValueError(f"fpr must be in (0, 1], got {fpr}")
    s, y = _validate(scores, labels)
    n0 = int((y == 0).sum())
    if not resolvable(n0, fpr):
        return math.nan
    fprs, tprs, _ = roc_curve(s, y)
    return float(tprs[fprs <= fpr + 1e-12].max())


def roc_points(scores, labels, max_points: int = 400) -> pd.DataFrame:
    """ROC curve ``fpr, tpr, threshold`` thinned to at most ``max_points`` vertices, for linear and
    log-log plots.

    The full curve is kept when it is small enough. Otherwise half the budget goes to a geometric FPR grid
    from ``1/n0`` to 1 (resolution where log-log plots need it) and half to a linear grid; for each grid
    value the curve vertex with the largest FPR <= the grid value (its highest TPR there) is kept, plus
    the end points (0, 0) and (1, 1). Every kept point is a vertex of the exact curve, so TPR at any grid
    FPR read off the thinned curve equals the exact value.
    """
    if max_points < 4:
        raise ValueError("max_points must be >= 4")
    fpr, tpr, thr = roc_curve(scores, labels)
    if fpr.size > max_points:
        n0 = int((np.asarray(labels) == 0).sum())
        half = (max_points - 2) // 2
        grid = np.unique(
            np.r_[np.geomspace(1.0 / n0, 1.0, half), np.linspace(0.0, 1.0, max_points - 2 - half)]
        )
        # last vertex with fpr <= g (fpr is non-decreasing along the curve)
        keep = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
        keep = np.unique(np.r_[0, keep[keep >= 0], fpr.size - 1])
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


# ----------------------------------------------------------------------------------------- bootstrap
class _Binned:
    """Scores mapped onto their sorted distinct values: weighted ROC statistics in O(#distinct)."""

    def __init__(self, s: np.ndarray, y: np.ndarray):
        values, inverse = np.unique(s, return_inverse=True)
        self.size = values.size
        self.member_bin = inverse[y == 1]
        self.nonmember_bin = inverse[y == 0]

    def stats(self, w: np.ndarray, v: np.ndarray, fprs: Sequence[float]) -> np.ndarray:
        """``[auc, tpr@fpr...]`` with member weights ``w`` and non-member weights ``v`` (multiplicities)."""
        cm = np.bincount(self.member_bin, weights=w, minlength=self.size)
        cn = np.bincount(self.nonmember_bin, weights=v, minlength=self.size)
        n1, n0 = cm.sum(), cn.sum()
        below = np.cumsum(cn) - cn
        out = np.empty(1 + len(fprs))
        out[0] = float(cm @ (below + 0.5 * cn)) / (n1 * n0)
        if len(fprs):
            tpr = np.r_[0.0, np.cumsum(cm[::-1]) / n1]
            fpr = np.r_[0.0, np.cumsum(cn[::-1]) / n0]
            for i, f in enumerate(fprs):
                out[1 + i] = tpr[fpr <= f + 1e-12].max() if resolvable(int(round(n0)), f) else np.nan
        return out


def _draws(y: np.ndarray, n_boot: int, seed: int):
    """Stratified multiplicities ``(w members, v non-members)`` per replicate (module docstring order)."""
    n1, n0 = int((y == 1).sum()), int((y == 0).sum())
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n1, n1), minlength=n1).astype(np.float64)
        v = np.bincount(rng.integers(0, n0, n0), minlength=n0).astype(np.float64)
        yield w, v


def bootstrap_replicates(
    scores, labels, fprs: Sequence[float] = (), n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """``[n_boot, 1 + len(fprs)]``: AUC and TPR at each FPR on each stratified bootstrap replicate.

    Replicate ``b`` equals the metrics of the data resampled with the ``b``-th draws: member indices
    ``rng.integers(0, n1, n1)`` (into the members in input order), then non-member indices.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    s, y = _validate(scores, labels)
    binned = _Binned(s, y)
    return np.array([binned.stats(w, v, fprs) for w, v in _draws(y, n_boot, seed)]).reshape(
        n_boot, 1 + len(fprs)
    )


def bootstrap_auc_ci(scores, labels, bootstrap: Bootstrap = Bootstrap()) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC (stratified, seeded; module docstring; ``bootstrap.n >= 1``)."""
    reps = bootstrap_replicates(scores, labels, (), bootstrap.n, bootstrap.seed)
    return stats.percentile_ci(reps[:, 0], bootstrap.level)


def bootstrap_cis(
    scores, labels, fprs: Sequence[float] = DEFAULT_FPRS, bootstrap: Bootstrap = Bootstrap()
) -> dict[str, tuple[float, float]]:
    """Percentile CIs ``{"auc": (low, high), "tpr_at_fpr_<f>": (low, high), ...}`` from one set of
    ``bootstrap.n`` (>= 1) replicates seeded with ``bootstrap.seed``; a TPR that cannot be resolved (too few
    non-members) has a ``(nan, nan)`` CI."""
    reps = bootstrap_replicates(scores, labels, fprs, bootstrap.n, bootstrap.seed)
    out = {"auc": stats.percentile_ci(reps[:, 0], bootstrap.level)}
    for i, f in enumerate(fprs):
        out[tpr_column(f)] = stats.percentile_ci(reps[:, 1 + i], bootstrap.level)
    return out


def tpr_column(fpr: float) -> str:
    """Column name for a target FPR: ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.001``."""
    return f"tpr_at_fpr_{fpr:g}"


def metric_columns(fprs: Sequence[float]) -> list[str]:
    """``auc, auc_ci_low, auc_ci_high, tpr_at_fpr_<f>, tpr_at_fpr_<f>_ci_low, ..._ci_high, ...``."""
    columns = ["auc", "auc_ci_low", "auc_ci_high"]
    for f in fprs:
        columns += [tpr_column(f), f"{tpr_column(f)}_ci_low", f"{tpr_column(f)}_ci_high"]
    return columns


COUNT_COLUMNS = ["n_members", "n_nonmembers", "n_short"]


def metric_row(
    scores, labels, fprs: Sequence[float] = DEFAULT_FPRS, bootstrap: Bootstrap = NO_BOOTSTRAP
) -> dict[str, float]:
    """AUC and TPR at each FPR with their CIs (NaN CIs when ``bootstrap.n == 0``, the default), plus class
    counts."""
    s, y = _validate(scores, labels)
    row: dict[str, float] = {"auc": roc_auc(s, y)}
    cis = bootstrap_cis(s, y, fprs, bootstrap) if bootstrap.n > 0 else {}
    row["auc_ci_low"], row["auc_ci_high"] = cis.get("auc", (math.nan, math.nan))
    for f in fprs:
        column = tpr_column(f)
        row[column] = tpr_at_fpr(s, y, f)
        row[f"{column}_ci_low"], row[f"{column}_ci_high"] = cis.get(column, (math.nan, math.nan))
    row["n_members"] = int((y == 1).sum())
    row["n_nonmembers"] = int((y == 0).sum())
    return row


def _check_long(attack_scores: pd.DataFrame) -> list[str]:
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
    return attacks


def _n_short(part: pd.DataFrame) -> float:
    return int(part["short"].astype(bool).sum()) if "short" in part.columns else math.nan


def summarize_attacks(
    attack_scores: pd.DataFrame, fprs: Sequence[float] = DEFAULT_FPRS, bootstrap: Bootstrap = NO_BOOTSTRAP
) -> pd.DataFrame:
    """One row per attack (first-appearance order) from a long table ``attack, score, label`` (+ ``id``,
    ``short``).

    Columns: ``attack``, :func:`metric_columns`, ``n_members, n_nonmembers, n_short`` (``n_short`` counts
    rows flagged ``short``; NaN without that column). CI columns are NaN when ``bootstrap.n == 0``. When an
    ``id`` column is present, every attack must score exactly the same ids, each once.
    """
    attacks = _check_long(attack_scores)
    rows = []
    for name in attacks:
        part = attack_scores[attack_scores["attack"] == name]
        row = {"attack": name}
        row.update(metric_row(part["score"], part["label"], fprs, bootstrap))
        row["n_short"] = _n_short(part)
        rows.append(row)
    return pd.DataFrame(rows, columns=["attack", *metric_columns(fprs), *COUNT_COLUMNS])


def summarize_by_category(
    attack_scores: pd.DataFrame,
    fprs: Sequence[float] = DEFAULT_FPRS,
    bootstrap: Bootstrap = NO_BOOTSTRAP,
    category_column: str = "category",
) -> pd.DataFrame:
    """:func:`summarize_attacks` per (attack, category): one row each, categories sorted.

    A category holding only members or only non-members keeps its row with NaN metrics and its counts
    (never dropped, never an error); TPRs follow the ``n0 >= 1/fpr`` rule per category.
    """
    attacks = _check_long(attack_scores)
    if category_column not in attack_scores.columns:
        raise ValueError(f"attack score table lacks column {category_column!r}")
    columns = ["attack", "category", *metric_columns(fprs), *COUNT_COLUMNS]
    rows = []
    for name in attacks:
        part = attack_scores[attack_scores["attack"] == name]
        for category, group in part.groupby(category_column, sort=True):
            labels = group["label"].to_numpy()
            n1, n0 = int((labels == 1).sum()), int((labels == 0).sum())
            row = {"attack": name, "category": category}
            if n1 and n0:
                row.update(metric_row(group["score"], labels, fprs, bootstrap))
            else:
                row.update({c: math.nan for c in metric_columns(fprs)})
                row.update({"n_members": n1, "n_nonmembers": n0})
            row["n_short"] = _n_short(group)
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------- paired bootstrap
def paired_bootstrap(
    scores_a, scores_b, labels, bootstrap: Bootstrap = Bootstrap(), fprs: Sequence[float] = ()
) -> dict[str, float]:
    """Difference A - B of AUC (and of TPR at each FPR) for two score vectors on the same examples.

    Both vectors are resampled with the same stratified example draws (module docstring): ``bootstrap.n``
    (>= 1) replicates seeded with ``bootstrap.seed``, intervals at ``bootstrap.level``. Returns
    ``auc_a, auc_b, auc_diff, auc_diff_ci_low, auc_diff_ci_high, auc_diff_p`` (and the same
    ``tpr_at_fpr_<f>_*`` keys per FPR; NaN when unresolvable), ``n_members, n_nonmembers``.
    """
    n_boot, level = bootstrap.n, bootstrap.level
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    a, y = _validate(scores_a, labels)
    b, _ = _validate(scores_b, labels)
    binned_a, binned_b = _Binned(a, y), _Binned(b, y)
    draws = _draws(y, n_boot, bootstrap.seed)
    diffs = np.array([binned_a.stats(w, v, fprs) - binned_b.stats(w, v, fprs) for w, v in draws])
    diffs = diffs.reshape(n_boot, 1 + len(fprs))
    ones1, ones0 = np.ones(int(y.sum())), np.ones(int((y == 0).sum()))
    point_a, point_b = binned_a.stats(ones1, ones0, fprs), binned_b.stats(ones1, ones0, fprs)
    out: dict[str, float] = {}
    for i, name in enumerate(["auc", *[tpr_column(f) for f in fprs]]):
        out[f"{name}_a"], out[f"{name}_b"] = float(point_a[i]), float(point_b[i])
        out[f"{name}_diff"] = float(point_a[i] - point_b[i])
        d = diffs[:, i]
        out[f"{name}_diff_ci_low"], out[f"{name}_diff_ci_high"] = stats.percentile_ci(d, level)
        out[f"{name}_diff_p"] = (
            math.nan if np.isnan(d).any() else float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))
        )
    out["n_members"], out["n_nonmembers"] = int(y.sum()), int((y == 0).sum())
    return out


def paired_differences(
    a: pd.DataFrame, b: pd.DataFrame, bootstrap: Bootstrap = Bootstrap(), fprs: Sequence[float] = ()
) -> pd.DataFrame:
    """One row per attack present in both long per-example tables ``id, attack, score, label``.

    Rows are matched by ``id`` (sets must be equal, labels must agree); columns ``attack`` then the keys
    of :func:`paired_bootstrap` (A minus B). Attacks scored for only one side are skipped.
    """
    for what, table in (("A", a), ("B", b)):
        missing = [c for c in ("id", "attack", "score", "label") if c not in table.columns]
        if missing:
            raise ValueError(f"table {what} lacks columns {missing}")
    common = [name for name in dict.fromkeys(a["attack"]) if name in set(b["attack"])]
    rows = []
    for name in common:
        part_a = a[a["attack"] == name].set_index("id")
        part_b = b[b["attack"] == name].set_index("id")
        if part_a.index.duplicated().any() or part_b.index.duplicated().any():
            raise ValueError(f"attack {name}: an id is scored twice")
        if set(part_a.index) != set(part_b.index):
            raise ValueError(f"attack {name}: the two tables score different examples")
        part_b = part_b.loc[part_a.index]
        if not np.array_equal(part_a["label"].to_numpy(), part_b["label"].to_numpy()):
            raise ValueError(f"attack {name}: labels disagree between the two tables")
        row = {"attack": name}
        row.update(
            paired_bootstrap(part_a["score"], part_b["score"], part_a["label"], bootstrap, fprs)
        )
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------- seed pooling
def pool_seeds(
    table: pd.DataFrame,
    by: Sequence[str],
    values: Sequence[str],
    seed_column: str = "seed",
    include_seeds: bool = True,
) -> pd.DataFrame:
    """Per-seed rows plus one pooled row per group of ``by``.

    Columns: ``by..., seed, n_seeds``, then per value ``v``: ``v, v_std, v_min, v_max``. A per-seed row
    has ``seed`` = its seed (as text), ``n_seeds`` 1 and NaN spread; the pooled row has ``seed ==
    "pooled"``, ``v`` = the mean over seeds, ``v_std`` the sample std (ddof 1; NaN for one seed) and the
    min/max. A NaN value in any seed makes the pooled mean NaN (nothing silently skipped). Each (group,
    seed) must appear once. ``include_seeds=False`` keeps the pooled rows only.
    """
    by, values = list(by), list(values)
    missing = [c for c in [*by, *values, seed_column] if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    if table.duplicated([*by, seed_column]).any():
        raise ValueError(f"a ({', '.join(by)}, {seed_column}) combination appears twice")
    spread = [s for v in values for s in (f"{v}_std", f"{v}_min", f"{v}_max")]
    columns = [*by, "seed", "n_seeds", *[c for v in values for c in (v, f"{v}_std", f"{v}_min", f"{v}_max")]]
    rows = []
    for key, group in table.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(by, key))
        if include_seeds:
            for _, r in group.iterrows():
                row = {**base, "seed": str(r[seed_column]), "n_seeds": 1}
                row.update({v: r[v] for v in values})
                row.update({s: math.nan for s in spread})
                rows.append(row)
        row = {**base, "seed": "pooled", "n_seeds": len(group)}
        for v in values:
            x = group[v].to_numpy(dtype=np.float64)
            nan = np.isnan(x).any()
            row[v] = math.nan if nan else float(x.mean())
            row[f"{v}_std"] = math.nan if nan or x.size < 2 else float(x.std(ddof=1))
            row[f"{v}_min"] = math.nan if nan else float(x.min())
            row[f"{v}_max"] = math.nan if nan else float(x.max())
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


# ------------------------------------------------------------------------------- workflow comparisons
def comparison_pairs(models: Sequence[Mapping]) -> list[tuple[Mapping, Mapping, str]]:
    """``(model, comparator, kind)`` pairs for paired differences (difference = model - comparator).

    ``models`` are dicts with ``family, seed, model, role, method, base`` (``role`` teacher|student). Every
    student is compared with the teacher of its family and seed (``kind == "teacher"``); every KD student
    (``method != "nokd"``) with the No-KD student(s) of the same family and seed, preferring those with the
    same base architecture (``kind == "nokd"``).
    """
    pairs = []
    for m in models:
        if m["role"] != "student":
            continue
        same = [o for o in models if o["family"] == m["family"] and o["seed"] == m["seed"] and o is not m]
        pairs += [(m, o, "teacher") for o in same if o["role"] == "teacher"]
        if m["method"] != "nokd":
            nokd = [o for o in same if o["role"] == "student" and o["method"] == "nokd"]
            same_base = [o for o in nokd if o["base"] == m["base"]]
            pairs += [(m, o, "nokd") for o in (same_base or nokd)]
    return pairs
