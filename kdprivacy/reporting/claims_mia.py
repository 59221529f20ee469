"""Membership-inference claims: KD vs No-KD students, which methods leak most and least, teacher vs students,
which attacks are strongest, what sits at chance, per-task and per-block risk.

Each function turns the tidy tables into ``cell`` rows of the findings table (the summaries are added by
:mod:`~kdprivacy.reporting.claims`); the rules for intervals and verdicts are in
:mod:`kdprivacy.reporting.verdicts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdprivacy.mia.registry import REFERENCE_ATTACKS
from kdprivacy.reporting.tidy import col, configured_students, kd_method_auc, main_rows, pool, require
from kdprivacy.reporting.verdicts import above, fmt, fmt_ci, make_row, seeds_note, untestable

TOP_LEAKERS = ("imitkd", "seqkd", "kd")
RISKY_CATEGORIES = ("creative_writing", "general_qa", "brainstorming")
SAFE_CATEGORIES = ("classification", "summarization", "closed_qa")


def kd_vs_nokd(paired: pd.DataFrame | None) -> list[dict]:
    """``kd_leaks_more_than_nokd`` cells and ``kd_method_ranking`` rows from the paired table."""
    if paired is None or paired.empty:
        return []
    require(
        paired,
        [
            "family",
            "model",
            "method",
            "comparison",
            "attack",
            "auc_model",
            "auc_diff",
            "auc_diff_ci_low",
            "auc_diff_ci_high",
        ],
        "mia_paired",
    )
    vs = main_rows(paired)
    vs = vs[vs["comparison"].astype(object) == "nokd"]
    if vs.empty:
        return []
    keys = ["family", "base", "model", "method", "comparator", "attack"]
    vs = vs.assign(base=col(vs, "base"), comparator=col(vs, "comparator"))
    diff = pool(vs, keys, "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high")
    auc = pool(vs, keys, "auc_model", None, None)
    cmp_auc = pool(vs.assign(auc_comparator=col(vs, "auc_comparator")), keys, "auc_comparator", None, None)
    diff["auc_model"] = auc["auc_model"].to_numpy()
    diff["auc_comparator"] = cmp_auc["auc_comparator"].to_numpy()
    rows = []
    for r in diff.itertuples(index=False):
        ok, why = above(r.ci_low, r.ci_high)
        detail = (
            f"{r.model} ({r.method}) AUC {fmt(r.auc_model)} vs No-KD {r.comparator} {fmt(r.auc_comparator)}: "
            f"difference {r.auc_diff:+.3f} {fmt_ci(r.ci_low, r.ci_high)} (paired bootstrap; "
            f"{seeds_note(r.n_seeds)}); {why}"
        )
        claim, statistic = "kd_leaks_more_than_nokd", "auc(model) - auc(nokd)"
        scope = f"{r.family}/{r.model}/{r.attack}"
        rows.append(
            make_row(claim, "cell", scope, statistic, r.auc_diff, r.ci_low, r.ci_high, r.n_seeds, ok, detail)
        )
    for (family, base, attack), group in diff.groupby(["family", "base", "attack"], sort=False, dropna=False):
        group = group.sort_values("auc_model", ascending=False, kind="stable")
        if len(group) < 1:
            continue
        parts = [
            f"{i + 1}. {g.method} ({g.model}) {fmt(g.auc_model)}, vs No-KD {g.auc_diff:+.3f} "
            f"{fmt_ci(g.ci_low, g.ci_high)}"
            for i, g in enumerate(group.itertuples(index=False))
        ]
        nokd = group["auc_comparator"].iloc[0]
        spread = float(group["auc_model"].max() - group["auc_model"].min())
        rows.append(
            make_row(
                "kd_method_ranking",
                "cell",
                f"{family}/{base}/{attack}",
                "auc(top method) - auc(bottom method)",
                spread,
                n=len(group),
                supported=None,
                detail=f"ranking by AUC (No-KD {fmt(nokd)}): " + "; ".join(parts) + " (descriptive)",
            )
        )
    return rows


def method_extremes(mia: pd.DataFrame) -> list[dict]:
    """``top_leakers_imitkd_seqkd_kd`` and ``minillm_leaks_least`` per (family, base, attack)."""
    rows = []
    pooled = kd_method_auc(mia)
    for (family, base, attack), g in pooled.groupby(["family", "base", "attack"], sort=False, dropna=False):
        g = g.dropna(subset=["auc"])
        scope = f"{family}/{base}/{attack}"
        listing = ", ".join(f"{m} {fmt(a)}" for m, a in zip(g["method"], g["auc"]))
        if len(g) < 2 or g["auc"].nunique() < 2:
            detail = f"{len(g)} KD methods with an AUC ({listing}): no ranking, not testable"
            rows.append(untestable("top_leakers_imitkd_seqkd_kd", scope, "auc(top method)", detail, n=len(g)))
            rows.append(
                untestable("minillm_leaks_least", scope, "auc(minillm) - min auc(others)", detail, n=len(g))
            )
            continue
        top = g.loc[g["auc"].idxmax()]
        tops = sorted(g.loc[g["auc"] == top["auc"], "method"])
        ok = any(m in TOP_LEAKERS for m in tops)
        rows.append(
            make_row(
                "top_leakers_imitkd_seqkd_kd",
                "cell",
                scope,
                "auc(top method)",
                float(top["auc"]),
                n=len(g),
                supported=ok,
                detail=f"top: {'/'.join(tops)} {fmt(top['auc'])} among {listing}; "
                f"{'one of' if ok else 'not one of'} {', '.join(TOP_LEAKERS)} (point estimates)",
            )
        )
        mini = g[g["method"] == "minillm"]
        if mini.empty:
            rows.append(
                untestable(
                    "minillm_leaks_least",
                    scope,
                    "auc(minillm) - min auc(others)",
                    f"no MiniLLM student ({listing}): not testable",
                    n=len(g),
                )
            )
            continue
        m_auc = float(mini["auc"].min())
        others = g[g["method"] != "minillm"]["auc"]
        gap = m_auc - float(others.min())
        rows.append(
            make_row(
                "minillm_leaks_least",
                "cell",
                scope,
                "auc(minillm) - min auc(others)",
                gap,
                n=len(g),
                supported=bool(gap <= 0),
                detail=f"MiniLLM {fmt(m_auc)}, lowest other {fmt(float(others.min()))} ({listing}); "
                f"{'lowest' if gap <= 0 else 'not lowest'} (point estimates)",
            )
        )
    return rows


def teacher_vs_students(paired: pd.DataFrame | None) -> list[dict]:
    """``teacher_leaks_more_than_students``: per (family, student, attack), teacher minus student."""
    if paired is None or paired.empty:
        return []
    vs = main_rows(paired)
    vs = vs[vs["comparison"].astype(object) == "teacher"]
    rows = []
    if vs.empty:
        return rows
    diff = pool(vs, ["family", "model", "attack"], "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high")
    t_auc = pool(
        vs.assign(auc_comparator=col(vs, "auc_comparator")),
        ["family", "model", "attack"],
        "auc_comparator",
        None,
        None,
    )["auc_comparator"].to_numpy()
    s_auc = pool(
        vs.assign(auc_model=col(vs, "auc_model")), ["family", "model", "attack"], "auc_model", None, None
    )["auc_model"].to_numpy()
    for r, t, s in zip(diff.itertuples(index=False), t_auc, s_auc):
        value, lo, hi = -r.auc_diff, -r.ci_high, -r.ci_low
        ok, why = above(lo, hi)
        rows.append(
            make_row(
                "teacher_leaks_more_than_students",
                "cell",
                f"{r.family}/{r.model}/{r.attack}",
                "auc(teacher) - auc(student)",
                value,
                lo,
                hi,
                r.n_seeds,
                ok,
                f"teacher {fmt(t)} vs {r.model} {fmt(s)}: {value:+.3f} {fmt_ci(lo, hi)} (paired bootstrap; "
                f"{seeds_note(r.n_seeds)}); {why}",
            )
        )
    return rows


def reference_strongest(mia: pd.DataFrame) -> list[dict]:
    """``reference_attacks_strongest``: per family, the attack with the highest mean KD-student AUC."""
    rows = []
    pooled = kd_method_auc(mia)
    for family, g in pooled.groupby("family", sort=False):
        means = g.groupby("attack", sort=False)["auc"].mean().dropna()
        if means.empty:
            continue
        refs = [a for a in means.index if a in REFERENCE_ATTACKS]
        listing = ", ".join(f"{a} {fmt(v)}" for a, v in means.sort_values(ascending=False).items())
        if not refs:
            rows.append(
                untestable(
                    "reference_attacks_strongest",
                    family,
                    "max mean auc(reference) - max mean " "auc(other)",
                    f"no reference attack run ({listing}): not testable",
                    n=len(means),
                )
            )
            continue
        others = [a for a in means.index if a not in REFERENCE_ATTACKS]
        best_ref = float(means[refs].max())
        best_other = float(means[others].max()) if others else math.nan
        value = best_ref - best_other if others else math.nan
        ok = None if not others else bool(value > 0)
        rows.append(
            make_row(
                "reference_attacks_strongest",
                "cell",
                family,
                "max mean auc(reference) - max mean auc(other)",
                value,
                n=len(means),
                supported=ok,
                detail=f"mean AUC over KD students per attack: {listing}; reference-based = "
                f"{', '.join(REFERENCE_ATTACKS)} (point estimates)",
            )
        )
    return rows


def near_chance(mia: pd.DataFrame, blind: pd.DataFrame | None = None) -> list[dict]:
    """``nokd_near_chance`` per (family, nokd model, attack); ``blind_baseline_near_chance`` per blind row. A
    No-KD cell with a ``note`` in the MIA table (an attack this model could not be tested with, e.g.
    ``ref_nokd`` without an independent No-KD reference) is not testable: never support."""
    rows = []
    students = configured_students(mia)
    nokd = students[students["method"] == "nokd"]
    if not nokd.empty:
        notes = col(nokd, "note").astype(object).where(col(nokd, "note").notna(), "").astype(str)
        na = {
            key: note
            for key, note in zip(zip(nokd["family"], nokd["model"], nokd["attack"]), notes)
            if note.strip()
        }
        for r in pool(nokd, ["family", "model", "attack"]).itertuples(index=False):
            if (r.family, r.model, r.attack) in na:  # e.g. ref_nokd of the No-KD student: no reference but itself
                rows.append(
                    untestable(
                        "nokd_near_chance", f"{r.family}/{r.model}/{r.attack}", "auc",
                        f"No-KD {r.model} {r.attack}: {na[(r.family, r.model, r.attack)]}", n=r.n_seeds,
                    )
                )
                continue
            if math.isnan(r.ci_low) or math.isnan(r.ci_high):
                ok, why = None, "no interval, not testable"
            else:
                ok = bool(r.ci_low <= 0.5 <= r.ci_high)
                why = "the CI contains 0.5: consistent with chance" if ok else "the CI excludes 0.5"
            rows.append(
                make_row(
                    "nokd_near_chance",
                    "cell",
                    f"{r.family}/{r.model}/{r.attack}",
                    "auc",
                    r.auc,
                    r.ci_low,
                    r.ci_high,
                    r.n_seeds,
                    ok,
                    f"No-KD {r.model} AUC {fmt(r.auc)} {fmt_ci(r.ci_low, r.ci_high)} "
                    f"({seeds_note(r.n_seeds)}); {why}",
                )
            )
    if blind is not None and not blind.empty:
        for r in blind.itertuples(index=False):
            auc, lo, hi = (
                float(r.auc),
                float(getattr(r, "auc_ci_low", math.nan)),
                float(getattr(r, "auc_ci_high", math.nan)),
            )
            if math.isnan(lo) or math.isnan(hi):
                ok, why = None, "no interval, not testable"
            else:
                ok = bool(lo <= 0.5 <= hi)
                why = (
                    "the CI contains 0.5: the split leaks nothing a bag of words sees"
                    if ok
                    else ("the CI excludes 0.5: members and non-members differ in text alone")
                )
            n = getattr(r, "n_members", math.nan) + getattr(r, "n_nonmembers", math.nan)
            rows.append(
                make_row(
                    "blind_baseline_near_chance",
                    "cell",
                    f"blind/{getattr(r, 'attack', 'blind')}",
                    "auc",
                    auc,
                    lo,
                    hi,
                    n,
                    ok,
                    f"model-free baseline AUC {fmt(auc)} {fmt_ci(lo, hi)} on " f"{n:g} examples; {why}",
                )
            )
    return rows


def category_order(category: pd.DataFrame | None, attacks: Sequence[str] | None = None) -> list[dict]:
    """``category_risk_order`` per (family, attack): mean student AUC, risky minus safe categories."""
    rows = []
    if category is None or category.empty:
        return rows
    students = configured_students(category)
    if students.empty:
        return rows
    pooled = pool(students, ["family", "model", "attack", "category"])
    for (family, attack), g in pooled.groupby(["family", "attack"], sort=False):
        means = g.groupby("category")["auc"].mean().dropna()
        risky = [c for c in RISKY_CATEGORIES if c in means.index]
        safe = [c for c in SAFE_CATEGORIES if c in means.index]
        scope = f"{family}/{attack}"
        if not risky or not safe:
            rows.append(
                untestable(
                    "category_risk_order",
                    scope,
                    "mean auc(risky) - mean auc(safe)",
                    f"categories present {sorted(means.index)}: a group is missing, not testable",
                    n=len(means),
                )
            )
            continue
        value = float(means[risky].mean() - means[safe].mean())
        order = ", ".join(f"{c} {fmt(v)}" for c, v in means.sort_values(ascending=False).items())
        rows.append(
            make_row(
                "category_risk_order",
                "cell",
                scope,
                "mean auc(risky) - mean auc(safe)",
                value,
                n=len(means),
                supported=bool(value > 0),
                detail=f"mean student AUC per category: {order}; risky {risky} vs safe {safe}: "
                f"{value:+.3f} (point estimates)",
            )
        )
    return rows


def _same_sigma(values: pd.Series, sigma: float) -> pd.Series:
    values = pd.to_numeric(values, errors="coerce")
    return values.isna() if math.isnan(sigma) else values == sigma


def block_variation(blocks: pd.DataFrame | None, spread: pd.DataFrame | None = None) -> list[dict]:
    """``block_risk_varies`` per (family, model, signal, sigma) -- scope ``family/model/signal`` (plus
    ``/sigma=...`` for MoPe): the spread (highest minus lowest block AUC, mean over seeds) tested
    simultaneously over all block pairs (``spread`` = ``blocks_spread.csv``,
    :func:`kdprivacy.mia.blocks.block_spread`). Several seeds: supported when the smallest p-value times the
    number of seeds (Bonferroni, valid whatever the seeds' dependence) is below ``1 - level``. Comparing the
    intervals of the extreme blocks is not used: picking the extremes first makes it fire on noise."""
    rows = []
    if blocks is None or blocks.empty:
        return rows
    require(blocks, ["family", "model", "signal", "sigma", "block", "auc"], "blocks")
    main = main_rows(blocks).assign(sigma=lambda t: pd.to_numeric(t["sigma"], errors="coerce"))
    keys = ["family", "model", "signal", "sigma", "block"]
    pooled = pool(main, keys)
    tests = None
    if spread is not None and not spread.empty:
        require(spread, ["family", "model", "signal", "sigma", "p_value", "level", "n_pairs"], "blocks_spread")
        tests = main_rows(spread)
    for (family, model, signal, sigma), g in pooled.groupby(keys[:-1], sort=False, dropna=False):
        g = g.dropna(subset=["auc"])
        sigma = float(sigma)
        scope = f"{family}/{model}/{signal}" + ("" if math.isnan(sigma) else f"/sigma={sigma:g}")
        statistic = f"{signal} auc(highest block) - auc(lowest block)"
        if len(g) < 2:
            rows.append(untestable("block_risk_varies", scope, statistic, "fewer than two blocks: not testable",
                                   n=len(g)))
            continue
        hi_b, lo_b = g.loc[g["auc"].idxmax()], g.loc[g["auc"].idxmin()]
        value = float(hi_b["auc"] - lo_b["auc"])
        mine = None
        if tests is not None:
            mine = tests[(tests["family"] == family) & (tests["model"] == model) & (tests["signal"] == signal)
                         & _same_sigma(tests["sigma"], sigma)]
        p_values = (np.array([]) if mine is None
                    else pd.to_numeric(mine["p_value"], errors="coerce").to_numpy(float))
        if p_values.size == 0:
            ok, why = None, "no simultaneous spread test for this model (blocks_spread.csv): not testable"
        elif np.isnan(p_values).any():
            ok, why = None, "the spread test has no p-value (n_bootstrap 0 or a non-finite score): not testable"
        else:
            alpha = 1 - float(mine["level"].iloc[0])
            p = min(1.0, float(p_values.min()) * p_values.size)
            ok = bool(p < alpha)
            seeds = (f" (smallest of {p_values.size} seeds' p-values x {p_values.size}, Bonferroni)"
                     if p_values.size > 1 else "")
            why = (f"simultaneous over {int(mine['n_pairs'].iloc[0])} block pairs (bootstrap of the centered "
                   f"spread, the same resampled examples for every block): p = {p:.3g}{seeds} "
                   f"{'<' if ok else '>='} {alpha:g}: {'supported' if ok else 'not supported'}")
        rows.append(
            make_row(
                "block_risk_varies",
                "cell",
                scope,
                statistic,
                value,
                n=len(g),
                supported=ok,
                detail=f"block {int(hi_b['block'])} {fmt(hi_b['auc'])} "
                f"{fmt_ci(hi_b['ci_low'], hi_b['ci_high'])} vs block {int(lo_b['block'])} "
                f"{fmt(lo_b['auc'])} {fmt_ci(lo_b['ci_low'], lo_b['ci_high'])}; {why}",
            )
        )
    return rows
