"""Ablation figures: AUC per KD objective (paper Fig. 3) and AUC over the SGO ratio (paper Fig. 4)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kdprivacy.kd import OBJECTIVE_NAMES
from kdprivacy.reporting import tidy
from kdprivacy.reporting.plots import FigureInputs
from kdprivacy.reporting.plots.base import attack_columns, ci_errorbar, outside_legend, save, skip


def objective_ablation(
    mia: pd.DataFrame, path: str | os.PathLike, attack_order: Sequence | None = None,
    sources: dict | None = None,
) -> pd.DataFrame | None:
    """Paper Fig. 3: AUC per KD objective (bars) and attack (groups), 95% CI error bars, one panel per
    family, from the rows with ``ablation == "objective"`` (plus the source student under its own objective
    when ``sources[family]["objective"] = {"student": name, "objective": obj}`` and ``obj`` is not an
    ablation value)."""
    abl = tidy.ablation_rows(mia, "objective")
    frames = [abl.assign(objective=abl["ablation_value"].astype(str))] if not abl.empty else []
    for family, spec in (sources or {}).items():
        src = (spec or {}).get("objective") or {}
        have = set(abl[abl["family"] == family]["ablation_value"].astype(str)) if not abl.empty else set()
        if (
            src.get("student")
            and src.get("objective")
            and src["objective"] not in have
            and (family in set(abl["family"]) if not abl.empty else False)
        ):
            rows = tidy.source_rows(mia, family, src["student"])
            frames.append(rows.assign(objective=str(src["objective"])))
    if not frames:
        return skip("objective ablation", "no rows with ablation == 'objective'")
    pooled = tidy.pool(pd.concat(frames, ignore_index=True), ["family", "objective", "model", "attack"])
    families = list(dict.fromkeys(pooled["family"]))
    attacks = attack_columns(pooled["attack"], attack_order)
    fig, axes = plt.subplots(
        len(families), 1, figsize=(max(6.0, 1.2 + 0.8 * len(attacks)), 3.4 * len(families)), squeeze=False
    )
    for ax, family in zip(axes[:, 0], families):
        g = pooled[pooled["family"] == family]
        objectives = tidy.ordered(g["objective"], OBJECTIVE_NAMES)
        width = 0.8 / len(objectives)
        for i, obj in enumerate(objectives):
            o = g[g["objective"] == obj].set_index("attack").reindex(attacks)
            x = np.arange(len(attacks)) + (i - (len(objectives) - 1) / 2) * width
            ax.bar(x, o["auc"] - 0.5, width, bottom=0.5, label=obj)  # NaN: no bar
            whisker = dict(fmt="none", ecolor="black", capsize=2, lw=0.8)
            ci_errorbar(ax, x, o["auc"], (o["ci_low"], o["ci_high"]), **whisker)
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(attacks)), labels=attacks, rotation=30, ha="right")
        ax.set_ylabel("ROC AUC (bars from 0.5)")
        ax.set_title(f"{family}: KD objective ablation (95% CI)", fontsize=10)
        ax.legend(title="objective", fontsize=7, title_fontsize=8, ncol=min(6, len(objectives)))
    save(fig, path)
    return pooled


def sgo_ablation(
    mia: pd.DataFrame, path: str | os.PathLike, attack_order: Sequence | None = None,
    sources: dict | None = None,
) -> pd.DataFrame | None:
    """Paper Fig. 4: fraction of student-generated outputs (x) vs AUC (y), one line per attack with 95% CI
    error bars, one panel per family (rows with ``ablation == "sgo_ratio"``, plus the source student at its
    own ratio when ``sources[family]["sgo_ratio"] = {"student": name, "value": ratio}``)."""
    pooled = tidy.sgo_points(mia, sources)
    if pooled.empty:
        return skip("SGO ablation", "no rows with ablation == 'sgo_ratio'")
    families = list(dict.fromkeys(pooled["family"]))
    attacks = attack_columns(pooled["attack"], attack_order)
    fig, axes = plt.subplots(len(families), 1, figsize=(6.5, 3.8 * len(families)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, family in zip(axes[:, 0], families):
        g = pooled[pooled["family"] == family]
        present = [a for a in attacks if a in set(g["attack"])]
        span = float(g["ratio"].max() - g["ratio"].min()) or 1.0
        dodge = 0.012 * span
        for i, attack in enumerate(present):
            a = g[g["attack"] == attack].sort_values("ratio")
            x = a["ratio"] + (i - (len(present) - 1) / 2) * dodge
            style = dict(marker="o", ms=3, capsize=2, lw=1.2, color=colors(i % 10), label=attack)
            ci_errorbar(ax, x, a["auc"], (a["ci_low"], a["ci_high"]), **style)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("fraction of student-generated outputs in the student's training data")
        ax.set_ylabel("ROC AUC")
        ax.set_title(f"{family}: SGO-ratio ablation (95% CI; points dodged sideways per attack)", fontsize=10)
        outside_legend(ax)
    save(fig, path)
    return pooled


# ---------------------------------------------------------------- entry points of the FIGURES registry
def figure_objective(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return objective_ablation(inputs.mia, path, inputs.attacks, inputs.sources)


def figure_sgo(inputs: FigureInputs, path: str) -> pd.DataFrame | None:
    return sgo_ablation(inputs.mia, path, inputs.attacks, inputs.sources)
