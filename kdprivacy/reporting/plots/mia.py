"""Membership-inference figures: KD method x attack AUC heatmaps (one per student base, shared colour scale),
the teacher / No-KD baselines, per-task risk, log-log ROC curves and per-block MoPe risk.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kdprivacy.reporting import tidy
from kdprivacy.reporting.plots import FigureInputs
from kdprivacy.reporting.plots.base import (
    Heatmap,
    attack_columns,
    auc_by_model,
    ci_errorbar,
    heatmap,
    log,
    model_labels,
    outside_legend,
    placeholder,
    save,
    skip,
    wrap_title,
)


def shared_auc_scale(
    mia: pd.DataFrame, step: float = 0.05, minimum: float = 0.1, roles: Sequence[str] = ("student",)
) -> tuple[float, float]:
    """Colour limits ``0.5 -+ d`` shared by all method heatmaps: ``d`` = the largest distance of a pooled
    AUC (of the given roles, configured models) from 0.5, rounded up to ``step``, at least ``minimum``."""
    main = tidy.main_rows(mia)
    main = main[main["role"].isin(roles)] if "role" in main.columns else main
    pooled = tidy.pool(main, ["family", "model", "attack"]) if len(main) else main
    dev = (pooled["auc"] - 0.5).abs().max() if len(pooled) else np.nan
    d = minimum if pd.isna(dev) else max(minimum, math.ceil(round(float(dev) / step, 9)) * step)
    return max(0.0, 0.5 - d), min(1.0, 0.5 + d)


def auc_grid(
    pooled: pd.DataFrame, path, vmin: float, vmax: float, attack_order: Sequence | None, title: str
) -> Heatmap:
    """Pooled AUC of ``pooled``'s ``row`` labels (rows) x attack (columns) on the colour scale vmin..vmax."""
    return heatmap(
        pooled,
        row="row",
        col="attack",
        value="auc",
        path=path,
        vmin=vmin,
        vmax=vmax,
        col_order=attack_columns(pooled["attack"], attack_order),
        title=title,
        colorbar_label="ROC AUC",
    )


def method_heatmap(
    mia: pd.DataFrame,
    family: str,
    base: str,
    path: str | os.PathLike,
    vmin: float = 0.0,
    vmax: float = 1.0,
    attack_order: Sequence | None = None,
) -> Heatmap | None:
    """KD method (rows, No-KD included) x attack (columns) AUC of the students of one ``family`` / student
    ``base``, configured students only (no ablation copies). Pass the same ``vmin``/``vmax`` (e.g.
    :func:`shared_auc_scale`) to every base so that colours compare across figures. A row is labelled by its
    method, or by the student's name when two students of the base share a method."""
    students = tidy.main_rows(mia)
    students = students[
        (students["family"] == family)
        & (students["role"] == "student")
        & (students["base"].astype(str) == str(base))
    ]
    if students.empty:
        return skip(f"methods {family}/{base}", "no student of this base in the MIA table")
    pooled = tidy.pool(students, ["method", "model", "attack"])
    dup = pooled.drop_duplicates(["method", "model"])["method"].duplicated(keep=False)
    shared = set(pooled.drop_duplicates(["method", "model"])["method"][dup])
    pooled["row"] = [
        m if m not in shared else f"{m} ({name})" for m, name in zip(pooled["method"], pooled["model"])
    ]
    pooled = pooled.sort_values("method", key=lambda s: s.map(tidy.method_sort_key), kind="stable")
    seeds = sorted(set(pooled["n_seeds"]))
    note = "one seed" if seeds == [1] else f"mean over {seeds[-1]} seeds"
    title = f"MIA ROC AUC of {family} students on base '{base}' ({note}; 0.5 = chance; shared colour scale)"
    return auc_grid(pooled, path, vmin, vmax, attack_order, title)


def baselines_heatmap(
    mia: pd.DataFrame,
    path: str | os.PathLike,
    attack_order: Sequence | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Heatmap | None:
    """Teacher and No-KD students (rows, ``family/model``) x attack AUC: the exposed model and the no-leakage
    reference side by side."""
    main = tidy.main_rows(mia)
    rows = main[(main["role"] == "teacher") | (main["method"] == "nokd")]
    if rows.empty:
        return skip("baselines", "no teacher or No-KD rows in the MIA table")
    pooled = tidy.pool(rows, ["family", "model", "method", "attack"])
    pooled["row"] = pooled["family"].astype(str) + "/" + pooled["model"].astype(str)
    pooled = tidy.by_method(pooled, ["family", "method"])
    title = "Baselines: teacher (attacked directly) and No-KD students (no teacher): MIA ROC AUC"
    return auc_grid(pooled, path, vmin, vmax, attack_order, title)


def category_risk(
    category: pd.DataFrame,
    path: str | os.PathLike,
    attack: str,
    roles: Sequence[str] = ("teacher", "student"),
) -> pd.DataFrame | None:
    """Paper Fig. 6: per-task risk. AUC (x, 95% CI) of each model (markers) per Dolly category (rows, riskiest
    on top by mean student AUC) for one ``attack``, from ``mia_category.csv``; configured models only."""
    tidy.require(category, ["family", "model", "attack", "category", "auc"], "mia_category")
    main = tidy.main_rows(category)
    main = main[(main["attack"] == attack) & main["role"].isin(roles)]
    if main.empty:
        return skip("category risk", f"no per-category rows for attack {attack!r}")
    pooled = tidy.pool(main, ["family", "model", "method", "role", "category"])
    students = pooled[pooled["role"] == "student"]
    rank_base = students if students["auc"].notna().any() else pooled
    order = rank_base.groupby("category")["auc"].mean().sort_values(ascending=False, na_position="last")
    cats = list(order.index) + [c for c in dict.fromkeys(pooled["category"]) if c not in order.index]
    pooled = tidy.by_method(pooled, ["family", "method"]).reset_index(drop=True)
    pooled["label"] = model_labels(pooled)
    labels = list(dict.fromkeys(pooled["label"]))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.55 * len(cats) + 1.2)))
    step = 0.8 / max(1, len(labels))
    colors = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        g = pooled[pooled["label"] == label].set_index("category").reindex(cats)
        y = np.arange(len(cats)) + (i - (len(labels) - 1) / 2) * step
        style = dict(fmt="o", ms=3.5, capsize=0, lw=0.9, color=colors(i % 10), label=label)
        ci_errorbar(ax, g["auc"], y, x_ci=(g["ci_low"], g["ci_high"]), **style)
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_yticks(np.arange(len(cats)), labels=cats)
    ax.invert_yaxis()
    ax.set_xlabel(f"ROC AUC ({attack})")
    ax.set_title(
        wrap_title(f"Per-task risk: {attack} AUC per Dolly category (95% CI; riskiest on top)"), fontsize=10
    )
    outside_legend(ax)
    save(fig, path)
    out = pooled.copy()
    out["category"] = pd.Categorical(out["category"], categories=cats, ordered=True)
    return (
        out.sort_values(["category", "family"], kind="stable")
        .assign(category=lambda f: f["category"].astype(str))
        .drop(columns=["label"])
        .reset_index(drop=True)
    )


def roc_curves(
    roc: pd.DataFrame, path: str | os.PathLike, attack: str, models: Sequence[str] | None = None
) -> pd.DataFrame | None:
    """Log-log ROC curves of one ``attack``, one line per model (each seed drawn; points with FPR or TPR
    0 cannot be shown on log axes and are left out). ``roc``: the per-model ``*.roc.csv`` points with the
    model key columns (``family, seed, model``, ...) added. Configured models only (or ``models``)."""
    tidy.require(roc, ["family", "model", "attack", "fpr", "tpr"], "ROC points")
    main = tidy.main_rows(roc)
    main = main[main["attack"] == attack]
    if models is not None:
        main = main[main["model"].isin(list(models))]
    main = main[(main["fpr"] > 0) & (main["tpr"] > 0)]
    if main.empty:
        return skip("ROC", f"no ROC points with FPR, TPR > 0 for attack {attack!r}")
    main = main.assign(seed=tidy.col(main, "seed"), method=tidy.col(main, "method"))
    main = tidy.by_method(main, ["family", "method"])
    main["label"] = model_labels(main)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    colors = plt.get_cmap("tab10")
    for i, (label, g) in enumerate(main.groupby("label", sort=False)):
        for j, (_, s) in enumerate(g.groupby("seed", sort=False, dropna=False)):
            s = s.sort_values(["fpr", "tpr"])
            ax.plot(
                s["fpr"],
                s["tpr"],
                color=colors(i % 10),
                lw=1.8 if (s["method"] == "teacher").all() else 1.1,
                label=label if j == 0 else None,
                drawstyle="steps-post",
            )
    low = float(main["fpr"].min())
    ax.plot([low, 1], [low, 1], color="grey", ls=":", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(wrap_title(f"ROC, log-log ({attack}): the low-FPR regime"), fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path)
    return main.drop(columns=["label"]).reset_index(drop=True)


def block_curves(
    blocks: pd.DataFrame, path: str | os.PathLike, models: Sequence[str] | None = None
) -> pd.DataFrame | None:
    """Per-block AUC vs relative depth (``(block + 1) / n_blocks``: teacher and students of any depth line up,
    1 = the last block), one panel per signal (:data:`kdprivacy.mia.registry.BLOCK_SIGNALS` order), one line
    per model (and MoPe noise scale when several), 95% CI band. Configured models only (or ``models``).
    Returns the drawn table."""
    from kdprivacy.mia.registry import BLOCK_SIGNALS

    tidy.require(blocks, ["family", "model", "signal", "block", "n_blocks", "auc"], "blocks")
    main = tidy.main_rows(blocks)
    if models is not None:
        main = main[main["model"].isin(list(models))]
    if main.empty:
        return skip("blocks", "no per-block rows")
    main = main.assign(method=tidy.col(main, "method"), sigma=pd.to_numeric(tidy.col(main, "sigma"), errors="coerce"))
    keys = ["family", "model", "method", "signal", "sigma", "block", "n_blocks"]
    pooled = tidy.pool(main, keys)
    pooled = tidy.by_method(pooled, ["family", "method"] + keys[3:]).reset_index(drop=True)
    pooled["relative_depth"] = (pooled["block"].astype(int) + 1) / pooled["n_blocks"].astype(int)
    pooled["line"] = model_labels(pooled)
    several = pooled.groupby("signal")["sigma"].transform(lambda v: v.nunique() > 1).astype(bool)
    if several.any():  # MoPe with a sigma sweep: one line per model and sigma
        sigmas = pooled.loc[several, "sigma"].map("{:g}".format).astype(str)
        pooled.loc[several, "line"] = pooled.loc[several, "line"] + " (sigma " + sigmas + ")"
    signals = [s for s in BLOCK_SIGNALS if s in set(pooled["signal"])]
    signals += [s for s in dict.fromkeys(pooled["signal"]) if s not in signals]
    lines = list(dict.fromkeys(pooled["line"]))
    colors = {line: plt.get_cmap("tab10")(i % 10) for i, line in enumerate(lines)}
    fig, axes = plt.subplots(1, len(signals), figsize=(3.6 * len(signals) + 1.8, 3.8), sharey=True, squeeze=False)
    for ax, signal in zip(axes[0], signals):
        for line, g in pooled[pooled["signal"] == signal].groupby("line", sort=False):
            g = g.sort_values("relative_depth")
            c = colors[line]
            teacher = (g["method"] == "teacher").all()
            ax.plot(g["relative_depth"], g["auc"], marker="o", ms=3, color=c, label=line, lw=2.2 if teacher else 1.3)
            ax.fill_between(g["relative_depth"], g["ci_low"], g["ci_high"], color=c, alpha=0.12, lw=0)
            if len(g) == 1:  # a band needs two blocks: show the interval as a whisker
                whisker = dict(fmt="none", ecolor=c, capsize=2, lw=0.8)
                ci_errorbar(ax, g["relative_depth"], g["auc"], (g["ci_low"], g["ci_high"]), **whisker)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("relative depth (block + 1) / blocks")
        spec = BLOCK_SIGNALS.get(signal)
        ax.set_title(wrap_title(spec.title if spec else signal, 34), fontsize=9)
    axes[0][0].set_ylabel("ROC AUC")
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for ax in axes[0][1:]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    axes[0][-1].legend(seen.values(), seen.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       borderaxespad=0.0)
    fig.suptitle(wrap_title("Where membership lives: per-block AUC vs relative depth, teacher and students "
                            "(band: 95% CI)", 90), fontsize=10)
    save(fig, path)
    return pooled.drop(columns=["line"])


def mia_auc_heatmap(mia: pd.DataFrame, path: str | os.PathLike, attacks: Sequence[str] = ()) -> pd.DataFrame:
    """The overview heatmap of raw ROC AUC: model (``family/model``, mean over training seeds) x attack,
    configured attacks first in their order. Returns the drawn grid as a table (one row per model)."""
    table = auc_by_model(mia)
    present = list(dict.fromkeys(table["attack"]))
    configured = list(attacks)
    attack_order = [a for a in configured if a in present] + [a for a in present if a not in configured]
    seed_counts = sorted(set(table["n_seeds"])) if len(table) else [1]
    if seed_counts == [1]:
        seeds = "one seed"
    elif len(seed_counts) == 1:
        seeds = f"mean over {seed_counts[0]} seeds"
    else:
        seeds = f"mean over {seed_counts[0]}-{seed_counts[-1]} seeds per model"
    drawn = heatmap(
        table,
        row="label",
        col="attack",
        value="auc",
        path=path,
        title=f"Membership inference ROC AUC ({seeds}; 0.5 = chance)",
        col_order=attack_order,
        colorbar_label="ROC AUC (raw, not flipped)",
    )
    log.info("heatmap of %d models x %d attacks", *drawn.values.shape)
    return drawn.values.rename_axis(index="model", columns=None).reset_index()


# ---------------------------------------------------------------- entry points of the FIGURES registry
def figure_methods(inputs: FigureInputs, paths: Sequence[str]) -> None:
    """One method heatmap per student base (``inputs.student_bases``, aligned with ``paths``), all on the
    colour scale of :func:`shared_auc_scale`; a notice for a base without students."""
    bases = list(inputs.student_bases)
    if len(paths) != len(bases):
        raise ValueError(f"output methods ({len(paths)}) and cfg student_bases ({len(bases)}) must align")
    vmin, vmax = shared_auc_scale(inputs.mia)
    log.info("shared AUC colour scale %.2f..%.2f", vmin, vmax)
    for path, spec in zip(paths, bases):
        family, base = spec.split("/", 1)
        if method_heatmap(inputs.mia, family, base, path, vmin, vmax, inputs.attacks) is None:
            placeholder(path, f"{family}/{base}: KD method x attack AUC", "no student of this base")


def figure_baselines(inputs: FigureInputs, path: str) -> Heatmap | None:
    return baselines_heatmap(inputs.mia, path, inputs.attacks)


def figure_category(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return category_risk(inputs.table("mia_category"), path, inputs.focus)


def figure_roc(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return roc_curves(inputs.roc(), path, inputs.focus)


def figure_blocks(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return block_curves(inputs.table("blocks"), path)


def shadow_curves(curve: pd.DataFrame, path: str | os.PathLike) -> pd.DataFrame | None:
    """Online LiRA vs the number of shadow pipelines (``results/tables/mia_shadow_curve.csv``): AUC and TPR at
    the lowest FPR the evaluation set resolves (1% when there are >= 100 non-members, else 5%), one line per
    model, mean over seeds with the 95% CI band of the per-seed intervals (their envelope). Returns the drawn
    table."""
    tidy.require(curve, ["family", "model", "n_shadows", "auc"], "mia_shadow_curve")
    if curve.empty:
        return skip("shadow_curve", "no shadow-count rows")
    tpr = next((c for c in ("tpr_at_fpr_0.01", "tpr_at_fpr_0.05") if c in curve and curve[c].notna().any()), None)
    metrics = [("auc", "ROC AUC")] + ([(tpr, f"TPR at {float(tpr.rsplit('_', 1)[1]):.0%} FPR")] if tpr else [])
    keys = ["family", "model", "n_shadows"]
    agg = {}
    for column, _ in metrics:
        agg[column] = (column, "mean")
        agg[f"{column}_ci_low"] = (f"{column}_ci_low", "min")
        agg[f"{column}_ci_high"] = (f"{column}_ci_high", "max")
    drawn = curve.groupby(keys, sort=False).agg(**agg).reset_index()
    drawn["line"] = model_labels(drawn)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 1.8, 3.6), squeeze=False)
    for ax, (column, label) in zip(axes[0], metrics):
        for i, (line, g) in enumerate(drawn.groupby("line", sort=False)):
            g = g.sort_values("n_shadows")
            color = plt.get_cmap("tab10")(i % 10)
            ax.plot(g["n_shadows"], g[column], marker="o", ms=3, color=color, label=line)
            ax.fill_between(g["n_shadows"], g[f"{column}_ci_low"], g[f"{column}_ci_high"], color=color, alpha=0.12,
                            lw=0)
        if column == "auc":
            ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_xticks(sorted(drawn["n_shadows"].unique()))
        ax.set_xlabel("shadow pipelines")
        ax.set_ylabel(label)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.suptitle("Online LiRA vs the number of shadow teacher-to-student pipelines (band: 95% CI)", fontsize=10)
    save(fig, path)
    return drawn.drop(columns=["line"])


def figure_shadow_curve(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return shadow_curves(inputs.table("mia_shadow_curve"), path)
