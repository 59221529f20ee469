"""Utility figures: ROUGE-L per model, and privacy risk (held-out best-attack AUC) against utility."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kdprivacy.reporting import tidy
from kdprivacy.reporting.plots import FigureInputs
from kdprivacy.reporting.plots.base import ci_errorbar, model_labels, save, skip, wrap_title


def utility_bars(
    utility: pd.DataFrame, path: str | os.PathLike, category: str = "ALL"
) -> pd.DataFrame | None:
    """ROUGE-L (x100) per model (``category`` row of ``utility.csv``), bars with 95% CIs."""
    tidy.require(utility, ["family", "model", "category", "rouge_l"], "utility")
    main = tidy.main_rows(utility)
    main = main[main["category"] == category]
    if main.empty:
        return skip("utility", f"no utility rows for category {category!r}")
    pooled = tidy.pool(main, ["family", "model", "method"], "rouge_l", "rouge_l_ci_low", "rouge_l_ci_high")
    pooled = tidy.by_method(pooled, ["family", "method"]).reset_index(drop=True)
    pooled["label"] = model_labels(pooled)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 + 0.6 * len(pooled)), 3.6))
    x = np.arange(len(pooled))
    ax.bar(x, pooled["rouge_l"], color=["#7f7f7f" if m == "teacher" else "#4c72b0" for m in pooled["method"]])
    whisker = dict(fmt="none", ecolor="black", capsize=3)
    ci_errorbar(ax, x, pooled["rouge_l"], (pooled["ci_low"], pooled["ci_high"]), **whisker)
    for xi, v in zip(x, pooled["rouge_l"]):
        if not pd.isna(v):
            ax.text(xi, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels=pooled["label"], rotation=45, ha="right")
    ax.set_ylabel("ROUGE-L (x100)")
    ax.set_title(
        wrap_title("Utility: ROUGE-L of greedy answers on held-out dev prompts (95% CI)"), fontsize=10
    )
    save(fig, path)
    return pooled[["family", "model", "method", "rouge_l", "ci_low", "ci_high", "n_seeds"]]


def privacy_vs_utility(
    best: pd.DataFrame, utility: pd.DataFrame, path: str | os.PathLike, category: str = "ALL"
) -> pd.DataFrame | None:
    """Per configured model: ROUGE-L x100 (x, ``category`` row of ``utility.csv``) vs its held-out
    best-attack AUC (y, ``mia_best_attack.csv`` of :func:`kdprivacy.reporting.best_attack.held_out_best`:
    the attack with the highest AUC on the selection half of the examples, its AUC and 95% CI on the other
    half, so the maximum over attacks does not inflate the number), 95% CIs."""
    required = ["family", "model", "method", "best_attack", "auc", "ci_low", "ci_high"]
    tidy.require(best, required, "mia_best_attack")
    main = tidy.main_rows(best)
    util = tidy.main_rows(utility)
    util = util[util["category"] == category] if "category" in util.columns else util
    if main.empty or util.empty:
        return skip("privacy vs utility", "no held-out best-attack or utility rows")
    keys = ["family", "model", "method"]
    best = main.dropna(subset=["auc"])
    if best.empty:
        return skip("privacy vs utility", "no AUC values")
    keep = [*keys, "best_attack", "auc", "ci_low", "ci_high", "n_seeds"]
    extra = [c for c in ("auc_selection", "n_attacks", "auc_same_data_max", "same_data_attack") if c in best]
    best = best[keep + extra]
    u = tidy.pool(
        util.assign(method=tidy.col(util, "method")),
        keys,
        "rouge_l",
        "rouge_l_ci_low",
        "rouge_l_ci_high",
    )
    both = best.merge(u, on=keys, suffixes=("", "_rouge")).dropna(subset=["rouge_l"])
    both = both.rename(
        columns={
            "ci_low_rouge": "rouge_l_ci_low",
            "ci_high_rouge": "rouge_l_ci_high",
            "n_seeds_rouge": "n_seeds_utility",
        }
    )
    if both.empty:
        return skip("privacy vs utility", "no model has both an AUC and a ROUGE-L")
    both["label"] = model_labels(both)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in both.itertuples(index=False):
        color = "#7f7f7f" if r.method == "teacher" else ("#55a868" if r.method == "nokd" else "#4c72b0")
        ci_errorbar(
            ax, [r.rouge_l], [r.auc], ([r.ci_low], [r.ci_high]), ([r.rouge_l_ci_low], [r.rouge_l_ci_high]),
            fmt="o", ms=4, lw=0.8, capsize=2, color=color,
        )
        ax.annotate(
            f"{r.label} ({r.best_attack})",
            (r.rouge_l, r.auc),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=6.5,
        )
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("utility: ROUGE-L (x100)")
    ax.set_ylabel("privacy risk: best-attack ROC AUC (held-out half)")
    ax.set_title(
        wrap_title(
            "Privacy vs utility per model: attack chosen on half the examples, AUC on the other half "
            "(grey: teacher, green: No-KD; 95% CI)"
        ),
        fontsize=10,
    )
    save(fig, path)
    return both.drop(columns=["label"]).reset_index(drop=True)


# ---------------------------------------------------------------- entry points of the FIGURES registry
def figure_utility(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return utility_bars(inputs.table("utility"), path)


def figure_privacy_utility(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return privacy_vs_utility(inputs.table("mia_best_attack"), inputs.table("utility"), path)
