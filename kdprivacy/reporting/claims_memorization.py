"""Memorization claims: the member/non-member gap, which KD method memorizes most, and whether membership
(AUC) and memorization (member match rate) rank the KD methods alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from kdprivacy.kd import KD_METHODS
from kdprivacy.reporting.tidy import col, kd_method_auc, main_rows, ordered, pool, require
from kdprivacy.reporting.verdicts import (
    above,
    fmt,
    fmt_ci,
    make_row,
    seeds_note,
    spearman,
    spearman_p_greater,
    untestable,
)


def memorization_claims(
    memo: pd.DataFrame | None, mia: pd.DataFrame | None = None, attacks: Sequence[str] | None = None
) -> list[dict]:
    """``memorization_gap_positive`` per model, ``distillm_memorizes_most`` per (family, base) and
    ``membership_memorization_disagree`` per (family, base, attack)."""
    rows = []
    if memo is None or memo.empty:
        return rows
    require(memo, ["family", "model", "member_rate", "gap"], "memorization")
    main = main_rows(memo)
    gaps = pool(
        main.assign(base=col(main, "base"), method=col(main, "method")),
        ["family", "base", "method", "model"],
        "gap",
        "gap_ci_low",
        "gap_ci_high",
    )
    for r in gaps.itertuples(index=False):
        ok, why = above(r.ci_low, r.ci_high)
        detail = f"{r.model} gap {r.gap:+.4f} {fmt_ci(r.ci_low, r.ci_high)} ({seeds_note(r.n_seeds)}); {why}"
        claim, statistic = "memorization_gap_positive", "member_rate - nonmember_rate"
        scope = f"{r.family}/{r.model}"
        rows.append(
            make_row(claim, "cell", scope, statistic, r.gap, r.ci_low, r.ci_high, r.n_seeds, ok, detail)
        )
    kd = main[col(main, "method").isin(KD_METHODS)]
    if kd.empty:
        return rows
    rates = pool(
        kd.assign(base=col(kd, "base")),
        ["family", "base", "method", "model"],
        "member_rate",
        "member_rate_ci_low",
        "member_rate_ci_high",
    )
    for (family, base), g in rates.groupby(["family", "base"], sort=False, dropna=False):
        g = g.dropna(subset=["member_rate"])
        scope = f"{family}/{base}"
        listing = ", ".join(f"{m} {fmt(v, 4)}" for m, v in zip(g["method"], g["member_rate"]))
        dist = g[g["method"] == "distillm"]
        if dist.empty or g["member_rate"].nunique() < 2:
            rows.append(
                untestable(
                    "distillm_memorizes_most",
                    scope,
                    "rate(distillm) - max rate(others)",
                    f"member match rates {listing or 'none'}: "
                    + ("no DistiLLM student" if dist.empty else "all equal")
                    + ", not testable",
                    n=len(g),
                )
            )
        else:
            others = g[g["method"] != "distillm"]["member_rate"]
            gap = float(dist["member_rate"].max() - others.max())
            rows.append(
                make_row(
                    "distillm_memorizes_most",
                    "cell",
                    scope,
                    "rate(distillm) - max rate(others)",
                    gap,
                    n=len(g),
                    supported=bool(gap >= 0),
                    detail=f"member match rates {listing}; DistiLLM "
                    f"{'highest' if gap >= 0 else 'not highest'} (point estimates)",
                )
            )
        if mia is None or mia.empty:
            continue
        auc = kd_method_auc(mia)
        auc = auc[(auc["family"] == family) & (auc["base"].astype(object) == base)]
        for attack in ordered(auc["attack"], attacks):
            a = auc[auc["attack"] == attack][["model", "auc"]].dropna()
            both = g.merge(a, on="model")
            scope_a = f"{family}/{base}/{attack}"
            rho = spearman(both["auc"], both["member_rate"]) if len(both) >= 2 else math.nan
            if len(both) < 4 or math.isnan(rho):
                ok = None
                detail = (
                    f"{len(both)} KD methods with both numbers"
                    + (" (a side is constant)" if len(both) >= 4 else " (need >= 4)")
                    + ": not testable"
                )
            else:
                p = spearman_p_greater(both["auc"], both["member_rate"])
                ok = bool(p >= 0.05)
                by_auc = " > ".join(both.sort_values("auc", ascending=False)["method"])
                by_mem = " > ".join(both.sort_values("member_rate", ascending=False)["method"])
                detail = (
                    f"by AUC: {by_auc}; by memorization: {by_mem}; Spearman {rho:+.2f}, one-sided "
                    f"permutation p {p:.3f}: "
                    + (
                        "agreement not significant, the two disagree"
                        if ok
                        else "significant agreement, they do not disagree"
                    )
                )
            statistic = "spearman(auc, member match rate) over KD methods"
            rows.append(
                make_row(
                    "membership_memorization_disagree",
                    "cell",
                    scope_a,
                    statistic,
                    rho,
                    n=len(both),
                    supported=ok,
                    detail=detail,
                )
            )
    return rows
