"""Memorization figures: member rate and member/non-member gap per model and metric, and membership (AUC)
against memorization (member match rate) per student.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kdprivacy.kd import KD_METHODS
from kdprivacy.reporting import tidy, verdicts
from kdprivacy.reporting.plots import FigureInputs
from kdprivacy.reporting.plots.base import (
    Heatmap,
    ci_errorbar,
    heatmap,
    model_labels,
    nice_ceiling,
    save,
    skip,
    wrap_title,
)

RATE_METRICS = ("match_rate", "exact_k", "exact_full", "rouge_l", "approx_memorized", "secret_hit")
"""Memorization metrics on a common 0..1 scale (drawn together); exposure and secret rank are not."""


def memorization_heatmap(
    summary: pd.DataFrame,
    path: str | os.PathLike,
    value: str = "member_rate",
    subset: str = "all",
    metrics: Sequence[str] = RATE_METRICS,
) -> Heatmap | None:
    """Model (rows: teacher, configured students) x memorization metric (columns) from
    ``memorization_summary.csv``: ``value="member_rate"`` (sequential 0..1) or ``"gap"`` (member minus
    non-member, diverging around 0, symmetric limits). Only metrics on the 0..1 scale (:data:`RATE_METRICS`).
    """
    tidy.require(summary, ["family", "model", "metric", value], "memorization summary")
    main = tidy.main_rows(summary)
    if "subset" in main.columns:
        main = main[main["subset"] == subset]
    main = main[main["metric"].isin(metrics)]
    if main.empty:
        return skip(f"memorization {value}", f"no rows of metrics {list(metrics)} (subset {subset})")
    low, high = (
        ("member_ci_low", "member_ci_high")
        if value == "member_rate"
        else (f"{value}_ci_low", f"{value}_ci_high")
    )
    pooled = tidy.pool(main, ["family", "model", "method", "metric"], value, low, high)
    pooled["row"] = model_labels(pooled)
    pooled = tidy.by_method(pooled, ["family", "method"])
    order = [m for m in metrics if m in set(pooled["metric"])]
    if value == "gap":
        d = float(np.nanmax(np.abs(pooled[value].to_numpy(float)))) if pooled[value].notna().any() else 0.0
        d = d if d > 0 else 0.01
        scale = dict(
            vmin=-d,
            vmax=d,
            center=0.0,
            fmt="{:+.3f}",
            colorbar_label="member - non-member",
            title="Memorization gap (member minus non-member rate; 0 = no memorization of members)",
        )
    else:
        top = (
            nice_ceiling(float(np.nanmax(pooled[value].to_numpy(float))))
            if pooled[value].notna().any()
            else 1.0
        )
        scale = dict(
            vmin=0.0,
            vmax=min(1.0, top),
            center=None,
            fmt="{:.3f}",
            cmap="Reds",
            colorbar_label="member rate",
            title="Memorization of the teacher's private examples (member rate per metric)",
        )
    return heatmap(pooled, "row", "metric", value, path, col_order=order, **scale)


def membership_vs_memorization(
    mia: pd.DataFrame, memorization: pd.DataFrame, path: str | os.PathLike, attack: str
) -> pd.DataFrame | None:
    """Paper Fig. 5's disagreement: per configured student, member match rate (x, ``memorization.csv``) vs
    AUC of ``attack`` (y), both with 95% CIs, points labelled by method; Spearman over KD methods per
    family/base in the legend."""
    students = tidy.main_rows(mia)
    students = students[(students["role"] == "student") & (students["attack"] == attack)]
    memo = tidy.main_rows(memorization)
    memo = memo[memo["role"] == "student"] if "role" in memo.columns else memo
    if students.empty or memo.empty:
        return skip("membership vs memorization", f"no student rows for attack {attack!r} or no memorization")
    keys = ["family", "base", "model", "method"]
    a = tidy.pool(students.assign(base=tidy.col(students, "base")), keys)
    m = tidy.pool(
        memo.assign(base=tidy.col(memo, "base"), method=tidy.col(memo, "method")),
        keys,
        "member_rate",
        "member_rate_ci_low",
        "member_rate_ci_high",
    )
    both = a.merge(m, on=keys, suffixes=("", "_rate"))
    both = both.rename(
        columns={
            "ci_low_rate": "member_rate_ci_low",
            "ci_high_rate": "member_rate_ci_high",
            "n_seeds_rate": "n_seeds_memorization",
        }
    )
    both = both.dropna(subset=["auc", "member_rate"], how="any")
    if both.empty:
        return skip("membership vs memorization", "no student has both an AUC and a member match rate")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = plt.get_cmap("tab10")
    for i, ((family, base), g) in enumerate(both.groupby(["family", "base"], sort=False, dropna=False)):
        kd = g[g["method"].isin(KD_METHODS)]
        rho = verdicts.spearman(kd["member_rate"], kd["auc"]) if len(kd) >= 2 else math.nan
        label = f"{family}/{base} (Spearman over KD methods: {'n/a' if math.isnan(rho) else f'{rho:+.2f}'})"
        ci_errorbar(
            ax, g["member_rate"], g["auc"], (g["ci_low"], g["ci_high"]),
            (g["member_rate_ci_low"], g["member_rate_ci_high"]),
            fmt="o", ms=4, lw=0.8, capsize=2, color=colors(i % 10), label=label,
        )
        for r in g.itertuples(index=False):
            ax.annotate(
                r.method, (r.member_rate, r.auc), textcoords="offset points", xytext=(4, 3), fontsize=7
            )
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("member match rate (memorization)")
    ax.set_ylabel(f"ROC AUC ({attack})")
    ax.set_title(
        wrap_title("Membership vs memorization per student: do they rank methods alike? (95% CI)"),
        fontsize=10,
    )
    ax.legend(fontsize=7, loc="best")
    save(fig, path)
    return both.reset_index(drop=True)


# ---------------------------------------------------------------- entry points of the FIGURES registry
def figure_memorization_rate(inputs: FigureInputs, path: str) -> Heatmap | None:
    return memorization_heatmap(inputs.table("memorization_summary"), path, "member_rate")


def figure_memorization_gap(inputs: FigureInputs, path: str) -> Heatmap | None:
    return memorization_heatmap(inputs.table("memorization_summary"), path, "gap")


def figure_membership_vs_memorization(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return membership_vs_memorization(inputs.mia, inputs.table("memorization"), path, inputs.focus)
