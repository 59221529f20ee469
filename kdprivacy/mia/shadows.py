"""Calibrated attacks from shadow pipelines: the IN/OUT assignment, LiRA (online and offline) and RMIA with
shadow references. Numpy and scipy only (no torch): the scores of the target and of every shadow model are
per-example mean token NLLs (``NLL_M(x)``, :mod:`kdprivacy.mia.attacks`), one column per shadow.

Shadows. A candidate is a member or a non-member of the target (the evaluation set). Shadow ``j`` is trained
on a seeded random half of the candidates (its IN examples) with the target's recipe -- a shadow teacher, and
from it one shadow student per KD method -- so it is a model for which membership is *known*. Shadows come in
complementary pairs: shadow ``2k`` draws a random half seeded by ``(seed, k)``, shadow ``2k + 1`` takes the
other half (an odd last shadow is the first of an unfinished pair). So every shadow holds exactly ``floor(n/2)`` or ``ceil(n/2)`` candidates, and with
an even number of shadows every candidate is IN for exactly half of them: the IN and OUT fits of LiRA rest on
the same number of models for every example (:func:`assign`, checked by :func:`check_balance`). The
assignment is a stored artifact, a tidy table ``example_id, shadow, in`` (:func:`assignment_table`).

LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles"). The statistic is the
logit-scaled confidence ``phi(x) = log p - log(1 - p)`` with ``p = exp(-NLL_M(x))`` the geometric-mean token
probability of the response (a per-token probability, comparable across lengths; the sequence probability
underflows), ``p`` clipped to ``[P_EPS, 1 - P_EPS]``. Per example, Gaussians are fitted to ``phi`` over the
shadows where it was IN (``mu_in, sigma_in``) and OUT (``mu_out, sigma_out``):

- online:  ``score(x) = log N(phi_T(x); mu_in, sigma_in^2) - log N(phi_T(x); mu_out, sigma_out^2)``
- offline: ``score(x) = log Phi((phi_T(x) - mu_out) / sigma_out)``, the one-sided test on OUT shadows only
  (a member is more confident than the OUT models: a larger ``phi``).

Higher = member, as for every attack. Means are the sample means (the paper's Algorithm 1; the authors' code
takes medians). ``variance="per_example"`` fits one deviation per example and role (the paper's online
attack with many shadows); ``"global"`` uses one deviation pooled over all examples and over both roles (each
score's deviation from its own example-and-role mean), the few-shadow variant the paper recommends (< 64
shadows); ``"auto"`` (default) picks per-example only when every example has at least ``PER_EXAMPLE_MIN`` IN
and OUT shadows. Why one deviation for both roles, not a global ``sigma_in`` and ``sigma_out``: with two, the
log ratio has a term ``z^2 (1/sigma_out^2 - 1/sigma_in^2) / 2`` that grows with the target's distance ``z``
from the shadows, so a 1% estimation difference between the two deviations turns every outlier (a member the
target memorised, ``z`` ~ 30 on the test toy) into a confident call in a direction set by noise: with shadows
that carry no IN/OUT contrast, AUC 0.64 on that toy instead of 0.50 (tests/test_shadows.py). The authors' code
also uses one deviation for both roles, estimated from the IN scores only.

RMIA with shadows (Zarifzadeh et al. 2024). ``Pr(x | M) = exp(-NLL_M(x))`` as in
:func:`kdprivacy.mia.attacks.rmia_log_ratio`; ``Pr(x)`` averages the shadow models:

- online: over all shadows (IN and OUT for ``x``), ``a`` not used;
- offline: over the shadows where ``x`` was OUT, then ``Pr(x) = (1 + a)/2 Pr_out(x) + (1 - a)/2``.

Population examples ``z`` are OUT for every shadow (they are never candidates), so ``Pr(z)`` averages all
shadows in both modes (offline: with the same ``a`` scaling). The score is the tie-broken fraction of
:func:`kdprivacy.mia.attacks.rmia_tie_broken`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from kdprivacy.mia import metrics
from kdprivacy.mia.attacks import _check_table, _not_self, aligned, mean_nll, rmia_log_ratio, rmia_tie_broken
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap

P_EPS = 1e-12  # phi is finite: p in [P_EPS, 1 - P_EPS]
SIGMA_FLOOR = 1e-6  # a Gaussian fit whose deviation is 0 (identical shadows) gets this one instead
PER_EXAMPLE_MIN = 32  # "auto" variance: per-example fits only with >= this many IN and OUT shadows each
VARIANCES = ("auto", "global", "per_example")


def shadow_half(n_candidates: int, shadow: int, seed: int) -> np.ndarray:
    """Which candidates shadow ``shadow`` trains on: pair ``k = shadow // 2`` draws a random half from
    ``numpy.random.default_rng([seed, k])`` (and a coin for which side gets the smaller half when the count
    is odd); the pair's second shadow takes the complement. It depends on ``(seed, shadow)`` only, never on
    the number of shadows: adding shadows leaves the existing ones (and their trained models) as they are."""
    if n_candidates < 2:
        raise ValueError(f"shadow assignment needs at least 2 candidate examples, got {n_candidates}")
    if shadow < 0:
        raise ValueError(f"a shadow index is >= 0, got {shadow}")
    rng = np.random.default_rng([int(seed), int(shadow) // 2])
    half = rng.permutation(n_candidates) < n_candidates // 2
    if rng.random() < 0.5:
        half = ~half
    return half if shadow % 2 == 0 else ~half


def assign(n_candidates: int, n_shadows: int, seed: int) -> np.ndarray:
    """``keep[i, j]`` = candidate ``i`` is IN shadow ``j`` (:func:`shadow_half` for every shadow)."""
    if n_shadows < 2:
        raise ValueError(f"shadow attacks need at least 2 shadows (IN and OUT for every example), got {n_shadows}")
    return np.stack([shadow_half(n_candidates, j, seed) for j in range(n_shadows)], axis=1)


def check_balance(keep: np.ndarray) -> None:
    """Raise unless every shadow holds half the candidates (floor or ceil) and every candidate is IN for half
    the shadows (floor or ceil): the properties :func:`assign` builds, checked on a stored assignment."""
    keep = np.asarray(keep, dtype=bool)
    if keep.ndim != 2 or keep.shape[0] < 2 or keep.shape[1] < 2:
        raise ValueError(f"a shadow assignment is [candidates >= 2, shadows >= 2], got shape {keep.shape}")
    n, m = keep.shape
    per_shadow = keep.sum(axis=0)
    bad = np.flatnonzero((per_shadow < n // 2) | (per_shadow > (n + 1) // 2))
    if bad.size:
        raise ValueError(f"shadow(s) {bad.tolist()} do not hold half of the {n} candidates: {per_shadow[bad].tolist()}")
    per_example = keep.sum(axis=1)
    bad = np.flatnonzero((per_example < m // 2) | (per_example > (m + 1) // 2))
    if bad.size:
        raise ValueError(
            f"{bad.size} candidate(s) are not IN for half of the {m} shadows (first: row {bad[0]}, "
            f"IN {per_example[bad[0]]} times)"
        )


def assignment_table(ids: Sequence[str], keep: np.ndarray) -> pd.DataFrame:
    """The stored artifact: one row per (candidate, shadow), columns ``example_id, shadow, in``."""
    keep = np.asarray(keep, dtype=bool)
    if len(ids) != keep.shape[0] or len(set(ids)) != len(ids):
        raise ValueError(f"{len(ids)} ids (distinct: {len(set(ids))}) for an assignment of {keep.shape[0]} rows")
    n, m = keep.shape
    return pd.DataFrame(
        {
            "example_id": np.repeat(np.asarray(ids, dtype=object), m),
            "shadow": np.tile(np.arange(m, dtype=np.int64), n),
            "in": keep.ravel(),
        }
    )


def keep_from_table(table: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
    """The ``[len(ids), shadows]`` matrix of a stored assignment table, rows in the order of ``ids``."""
    missing = {"example_id", "shadow", "in"} - set(table.columns)
    if missing:
        raise ValueError(f"shadow assignment table lacks column(s) {sorted(missing)}")
    wide = table.pivot(index="example_id", columns="shadow", values="in")
    absent = [i for i in ids if i not in wide.index]
    if absent:
        raise ValueError(f"{len(absent)} candidate(s) have no shadow assignment (first: {absent[0]!r})")
    if wide.isna().any().any():
        raise ValueError("shadow assignment table is not complete: some (candidate, shadow) pairs are missing")
    return wide.loc[list(ids)].to_numpy(dtype=bool)


def logit_confidence(nll) -> np.ndarray:
    """``phi = log p - log(1 - p)``, ``p = exp(-nll)`` clipped to ``[P_EPS, 1 - P_EPS]`` (stable in log space)."""
    nll = np.asarray(nll, dtype=np.float64)
    if np.isnan(nll).any():
        raise ValueError(f"{int(np.isnan(nll).sum())} NaN NLL(s): every example needs a scored token")
    if (nll < 0).any():
        raise ValueError("a mean token NLL is >= 0; got a negative value")
    lo, hi = -np.log1p(-P_EPS), -np.log(P_EPS)  # nll range that keeps p in [P_EPS, 1 - P_EPS]
    nll = np.clip(nll, lo, hi)
    return -nll - np.log(-np.expm1(-nll))


def _check_shapes(target_nll, shadow_nll, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    target = np.asarray(target_nll, dtype=np.float64).ravel()
    shadow = np.asarray(shadow_nll, dtype=np.float64)
    keep = np.asarray(keep, dtype=bool)
    if shadow.ndim != 2 or shadow.shape[0] != target.size or keep.shape != shadow.shape:
        raise ValueError(
            f"target ({target.size},), shadow NLLs {shadow.shape} and assignment {keep.shape} do not match: "
            "need [examples, shadows] for both"
        )
    return target, shadow, keep


def _fit(phi: np.ndarray, masks: Sequence[np.ndarray], variance: str, roles: Sequence[str]):
    """Per-example means of ``phi`` over the shadows of each mask (one per role) and the deviations: per
    example and role, or one pooled over all examples *and* roles (``global``)."""
    means, devs, counts = [], [], []
    for mask, role in zip(masks, roles):
        count = mask.sum(axis=1)
        if (count < 1).any():
            raise ValueError(f"{int((count < 1).sum())} example(s) have no {role} shadow")
        mean = np.where(mask, phi, 0.0).sum(axis=1) / count
        means.append(mean)
        devs.append(np.where(mask, phi - mean[:, None], 0.0))
        counts.append(count)
    if variance == "per_example":
        sigmas = []
        for dev, count, role in zip(devs, counts, roles):
            if (count < 2).any():
                raise ValueError(f"per-example variance needs >= 2 {role} shadows per example, min is {count.min()}")
            sigmas.append(np.sqrt((dev**2).sum(axis=1) / (count - 1)))
    else:
        dof = int(sum(c.sum() - c.size for c in counts))  # one mean estimated per example and role
        if dof < 1:
            raise ValueError(f"a pooled variance needs more shadow scores than fitted means ({'/'.join(roles)})")
        pooled = np.sqrt(sum((d**2).sum() for d in devs) / dof)
        sigmas = [np.full(phi.shape[0], pooled) for _ in roles]
    return [(m, np.maximum(s, SIGMA_FLOOR)) for m, s in zip(means, sigmas)]


def _variance(keep: np.ndarray, variance: str, online: bool) -> str:
    if variance not in VARIANCES:
        raise ValueError(f"LiRA variance must be one of {VARIANCES}, got {variance!r}")
    if variance != "auto":
        return variance
    fewest = min(keep.sum(axis=1).min(), (~keep).sum(axis=1).min()) if online else (~keep).sum(axis=1).min()
    return "per_example" if fewest >= PER_EXAMPLE_MIN else "global"


def lira_online(target_nll, shadow_nll, keep, variance: str = "auto") -> np.ndarray:
    """Online LiRA (module docstring): the per-example Gaussian log-likelihood ratio, IN over OUT."""
    target, shadow, keep = _check_shapes(target_nll, shadow_nll, keep)
    variance = _variance(keep, variance, online=True)
    phi_t, phi_s = logit_confidence(target), logit_confidence(shadow)
    (mu_in, sd_in), (mu_out, sd_out) = _fit(phi_s, [keep, ~keep], variance, ["IN", "OUT"])
    return sps.norm.logpdf(phi_t, mu_in, sd_in) - sps.norm.logpdf(phi_t, mu_out, sd_out)


def lira_offline(target_nll, shadow_nll, keep, variance: str = "auto") -> np.ndarray:
    """Offline LiRA (module docstring): the one-sided test against the OUT shadows only."""
    target, shadow, keep = _check_shapes(target_nll, shadow_nll, keep)
    variance = _variance(keep, variance, online=False)
    phi_t, phi_s = logit_confidence(target), logit_confidence(shadow)
    ((mu_out, sd_out),) = _fit(phi_s, [~keep], variance, ["OUT"])
    return sps.norm.logcdf(phi_t, mu_out, sd_out)


def _log_mean_exp_masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=1)
    if (counts < 1).any():
        raise ValueError(f"{int((counts < 1).sum())} example(s) have no reference shadow")
    masked = np.where(mask, values, -np.inf)
    top = masked.max(axis=1, keepdims=True)
    return top[:, 0] + np.log(np.exp(masked - top).sum(axis=1)) - np.log(counts)


def rmia_shadow(
    target_nll,
    shadow_nll,
    keep,
    population_target_nll,
    population_shadow_nll,
    online: bool = True,
    a: float = 1.0,
    gamma: float = 1.0,
) -> np.ndarray:
    """RMIA with the shadows as reference models (module docstring); tie-broken score in ``(0, 1)``."""
    target, shadow, keep = _check_shapes(target_nll, shadow_nll, keep)
    pop_t = np.asarray(population_target_nll, dtype=np.float64).ravel()
    pop_s = np.asarray(population_shadow_nll, dtype=np.float64)
    if pop_s.shape != (pop_t.size, shadow.shape[1]):
        raise ValueError(f"population shadow NLLs {pop_s.shape} != (population {pop_t.size}, shadows {shadow.shape[1]})")
    if not 0 <= a <= 1:
        raise ValueError(f"rmia a must be in [0, 1], got {a}")
    refs = np.ones_like(keep) if online else ~keep
    log_out = _log_mean_exp_masked(-shadow, refs)
    if online:
        log_px = log_out
    else:
        with np.errstate(divide="ignore"):
            log_px = np.logaddexp(np.log((1 + a) / 2) + log_out, np.log((1 - a) / 2))
    log_lr_x = -target - log_px
    log_lr_z = rmia_log_ratio(pop_t, pop_s, a=1.0 if online else a)
    return rmia_tie_broken(log_lr_x, log_lr_z, gamma)


# -- the attacks of the registry (kdprivacy.mia.registry.ATTACKS: lira, lira_offline, rmia_shadow) --


@dataclass(frozen=True)
class ShadowTables:
    """What the shadow attacks read for one target (``AttackContext.shadows``): the assignment table, the
    score table of the matching shadow model of every shadow (shadow teacher for the teacher, the shadow
    student of the same name for a student) and its population table, in shadow order."""

    assignment: pd.DataFrame
    scores: Sequence[pd.DataFrame]
    populations: Sequence[pd.DataFrame] = ()
    variance: str = "auto"

    def matrices(self, target: pd.DataFrame, attack: str, n_shadows: int | None = None):
        """``(target NLL [n], shadow NLLs [n, N], keep [n, N])`` on the target's ids; the first ``n_shadows``
        shadows (None: all)."""
        ids = target["id"].tolist()
        keep = keep_from_table(self.assignment, ids)
        if keep.shape[1] != len(self.scores):
            raise ValueError(f"attack {attack}: the assignment has {keep.shape[1]} shadows, "
                             f"{len(self.scores)} shadow score tables are given")
        m = keep.shape[1] if n_shadows is None else int(n_shadows)
        columns = []
        for j, table in enumerate(self.scores[:m]):
            _check_table(table, f"shadow {j} score table")
            _not_self(target, table, f"shadow {j}", attack)
            columns.append(mean_nll(aligned(table, ids, f"shadow {j} score table")))
        return mean_nll(target), np.stack(columns, axis=1), keep[:, :m]


def _tables(context, attack: str) -> ShadowTables:
    if context.shadows is None:
        raise ValueError(f"attack {attack} needs the shadow models' score tables and the IN/OUT assignment")
    return context.shadows


def lira_score(scores: pd.DataFrame, context) -> np.ndarray:
    tables = _tables(context, "lira")
    return lira_online(*tables.matrices(scores, "lira"), variance=tables.variance)


def lira_offline_score(scores: pd.DataFrame, context) -> np.ndarray:
    tables = _tables(context, "lira_offline")
    return lira_offline(*tables.matrices(scores, "lira_offline"), variance=tables.variance)


def rmia_shadow_score(scores: pd.DataFrame, context) -> np.ndarray:
    tables = _tables(context, "rmia_shadow")
    if context.population is None:
        raise ValueError("attack rmia_shadow needs the target's population score table")
    if len(tables.populations) != len(tables.scores):
        raise ValueError(f"attack rmia_shadow: {len(tables.populations)} shadow population tables for "
                         f"{len(tables.scores)} shadows")
    target, shadow, keep = tables.matrices(scores, "rmia_shadow")
    z_ids = context.population["id"].tolist()
    pop = np.stack([mean_nll(aligned(t, z_ids, f"shadow {j} population table"))
                    for j, t in enumerate(tables.populations)], axis=1)
    return rmia_shadow(target, shadow, keep, mean_nll(context.population), pop, online=True, gamma=context.rmia.gamma)


def shadow_count_curve(scores: pd.DataFrame, tables: ShadowTables, counts: Sequence[int], fprs: Sequence[float],
                       bootstrap: Bootstrap = NO_BOOTSTRAP) -> pd.DataFrame:
    """Online LiRA with the first ``N`` shadows for each ``N`` of ``counts`` (pairs stay whole when ``N`` is
    even): one metric row per ``N`` (AUC, TPR at each FPR, bootstrap CIs), so one sees where more shadows
    stop paying."""
    labels = scores["label"].to_numpy()
    rows = []
    for n in counts:
        target, shadow, keep = tables.matrices(scores, "lira", n_shadows=n)
        values = lira_online(target, shadow, keep, variance=tables.variance)
        row = metrics.metric_row(values, labels, fprs, bootstrap)
        rows.append({"n_shadows": int(n), **row})
    return pd.DataFrame(rows)
