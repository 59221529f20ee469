"""Figures. Matplotlib with the Agg backend (no display); files written atomically via :mod:`kdprivacy.io`."""

from __future__ import annotations

import logging
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize, TwoSlopeNorm  # noqa: E402

from kdprivacy import findings, io  # noqa: E402

MISSING_COLOR = "#d9d9d9"
"""Background of cells without a value (no number is printed there)."""


def auc_by_model(mia: pd.DataFrame, value: str = "auc") -> pd.DataFrame:
    """Long table ``label, attack, <value>, n_seeds`` with ``label = f"{family}/{model}"``.

    ``value`` is averaged over the training seeds present for that model and attack (``n_seeds`` of them).
    Order: first appearance in ``mia``.
    """
    for column in ("family", "model", "seed", "attack", value):
        if column not in mia.columns:
            raise ValueError(f"MIA table lacks column {column!r}")
    frame = mia.assign(label=mia["family"].astype(str) + "/" + mia["model"].astype(str))
    if frame.duplicated(["label", "seed", "attack"]).any():
        raise ValueError("MIA table has a (model, seed, attack) row twice")
    grouped = frame.groupby(["label", "attack"], sort=False)
    out = grouped[value].mean().to_frame(value)
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()


@dataclass(frozen=True)
class Heatmap:
    """What was drawn: the value grid (NaN = missing) and each cell's annotation text ("" = blank)."""

    values: pd.DataFrame
    texts: pd.DataFrame


def heatmap(
    table: pd.DataFrame,
    row: str,
    col: str,
    value: str,
    path: str | os.PathLike,
    title: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    center: float | None = 0.5,
    fmt: str = "{:.2f}",
    cmap: str = "RdBu_r",
    row_order: Sequence | None = None,
    col_order: Sequence | None = None,
    colorbar_label: str | None = None,
) -> Heatmap:
    """Annotated heatmap of ``value`` with one cell per (``row``, ``col``) pair of ``table``.

    Cells with no row in ``table`` (or a NaN value) are left blank (grey background, no number), never
    filled in. A (row, col) pair that
    occurs twice is an error (aggregate before plotting). Colours use the fixed scale ``vmin..vmax`` (shared
    across figures), diverging around ``center`` when given (default 0.5: chance-level AUC). Rows/columns
    follow ``row_order``/``col_order`` or first appearance in ``table``.
    """
    for column in (row, col, value):
        if column not in table.columns:
            raise ValueError(f"table lacks column {column!r}")
    if table.duplicated([row, col]).any():
        raise ValueError(f"duplicate ({row}, {col}) pairs; aggregate before plotting")
    rows = list(row_order) if row_order is not None else list(dict.fromkeys(table[row]))
    cols = list(col_order) if col_order is not None else list(dict.fromkeys(table[col]))
    values = (
        table.pivot(index=row, columns=col, values=value).reindex(index=rows, columns=cols).astype(np.float64)
    )
    texts = values.apply(lambda series: series.map(lambda v: "" if pd.isna(v) else fmt.format(v)))

    if center is not None and vmin < center < vmax:
        norm = TwoSlopeNorm(vcenter=center, vmin=vmin, vmax=vmax)
    else:
        norm = Normalize(vmin=vmin, vmax=vmax)
    colormap = plt.get_cmap(cmap).with_extremes(bad=MISSING_COLOR)
    width = max(5.0, 2.5 + 0.9 * len(cols))
    height = max(2.5, 1.0 + 0.45 * len(rows))
    fig, ax = plt.subplots(figsize=(width, height))
    try:
        grid = np.ma.masked_invalid(values.to_numpy())
        image = ax.imshow(grid, cmap=colormap, norm=norm, aspect="auto")
        ax.set_xticks(range(len(cols)), labels=[str(c) for c in cols], rotation=45, ha="right")
        ax.set_yticks(range(len(rows)), labels=[str(r) for r in rows])
        for i in range(len(rows)):
            for j in range(len(cols)):
                text = texts.iat[i, j]
                if not text:
                    continue
                rgba = colormap(norm(values.iat[i, j]))
                luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="black" if luminance > 0.5 else "white",
                )
        fig.colorbar(image, ax=ax, label=colorbar_label if colorbar_label is not None else value)
        if title:
            ax.set_title("\n".join(textwrap.wrap(title, width=int(width * 9))), fontsize=10)
        fig.tight_layout()
        io.write_figure(fig, path, dpi=150)
    finally:
        plt.close(fig)
    return Heatmap(values=values, texts=texts)


# ============================================================================ study figures
# Each takes a tidy table (as written under results/tables/) and a path, writes the figure atomically and
# returns what it drew (a Heatmap, or a DataFrame of the plotted points), or returns None without writing
# when the table holds nothing for the figure (the reason is logged). Values are pooled over seeds by
# :func:`kdprivacy.findings.pool` (mean; interval = the per-seed CI for one seed, the envelope of the
# per-seed CIs for several). Cells without a row stay blank; nothing is filled in.
log = logging.getLogger("kdprivacy.plots")

RATE_METRICS = ("match_rate", "exact_k", "exact_full", "rouge_l", "approx_memorized", "secret_hit")
"""Memorization metrics on a common 0..1 scale (drawn together); exposure and secret rank are not."""


def _skip(name: str, reason: str) -> None:
    log.info("figure %s skipped: %s", name, reason)
    return None


def _errors(y, lo, hi) -> np.ndarray:
    """Error-bar lengths below/above ``y``; 0 where there is no interval (nothing is drawn there)."""
    y, lo, hi = (np.asarray(v, dtype=np.float64) for v in (y, lo, hi))
    below = np.where(np.isnan(lo), 0.0, np.clip(y - lo, 0.0, None))
    above = np.where(np.isnan(hi), 0.0, np.clip(hi - y, 0.0, None))
    return np.vstack([below, above])


def _label(frame: pd.DataFrame) -> pd.Series:
    """``model`` when one family is present, ``family/model`` otherwise."""
    if frame["family"].nunique() > 1:
        return frame["family"].astype(str) + "/" + frame["model"].astype(str)
    return frame["model"].astype(str)


def _save(fig, path) -> None:
    try:
        fig.tight_layout()
        io.write_figure(fig, path, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)


def _outside_legend(ax, **kwargs) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def _nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``x`` (colour limits of data-driven scales)."""
    if not x > 0:
        return 0.01
    k = math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**k >= x - 1e-12:
            return m * 10**k
    return 10 ** (k + 1)


def _wrap(title: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(title, width=width))


def placeholder(path: str | os.PathLike, title: str, reason: str) -> None:
    """A small figure that says why there is nothing to show (for declared outputs a run cannot fill)."""
    fig, ax = plt.subplots(figsize=(5, 1.8))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", va="center", fontsize=10, weight="bold")
    ax.text(0.5, 0.3, _wrap(f"Not available in this run: {reason}", 60), ha="center", va="center", fontsize=8)
    _save(fig, path)


def shared_auc_scale(
    mia: pd.DataFrame, step: float = 0.05, minimum: float = 0.1, roles: Sequence[str] = ("student",)
) -> tuple[float, float]:
    """Colour limits ``0.5 -+ d`` shared by all method heatmaps: ``d`` = the largest distance of a pooled
    AUC (of the given roles, configured models) from 0.5, rounded up to ``step``, at least ``minimum``."""
    main = findings.main_rows(mia)
    main = main[main["role"].isin(roles)] if "role" in main.columns else main
    pooled = findings.pool(main, ["family", "model", "attack"]) if len(main) else main
    dev = (pooled["auc"] - 0.5).abs().max() if len(pooled) else np.nan
    d = minimum if pd.isna(dev) else max(minimum, math.ceil(round(float(dev) / step, 9)) * step)
    return max(0.0, 0.5 - d), min(1.0, 0.5 + d)


def _attack_order(present: Sequence, attack_order: Sequence | None) -> list:
    return findings.ordered(present, attack_order)


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
    students = findings.main_rows(mia)
    students = students[
        (students["family"] == family)
        & (students["role"] == "student")
        & (students["base"].astype(str) == str(base))
    ]
    if students.empty:
        return _skip(f"methods {family}/{base}", "no student of this base in the MIA table")
    pooled = findings.pool(students, ["method", "model", "attack"])
    dup = pooled.drop_duplicates(["method", "model"])["method"].duplicated(keep=False)
    shared = set(pooled.drop_duplicates(["method", "model"])["method"][dup])
    pooled["row"] = [
        m if m not in shared else f"{m} ({name})" for m, name in zip(pooled["method"], pooled["model"])
    ]
    pooled = pooled.sort_values("method", key=lambda s: s.map(findings.method_sort_key), kind="stable")
    seeds = sorted(set(pooled["n_seeds"]))
    note = "one seed" if seeds == [1] else f"mean over {seeds[-1]} seeds"
    return heatmap(
        pooled,
        row="row",
        col="attack",
        value="auc",
        path=path,
        vmin=vmin,
        vmax=vmax,
        col_order=_attack_order(pooled["attack"], attack_order),
        title=f"MIA ROC AUC of {family} students on base '{base}' ({note}; 0.5 = chance; "
        "shared colour scale)",
        colorbar_label="ROC AUC",
    )


def baselines_heatmap(
    mia: pd.DataFrame,
    path: str | os.PathLike,
    attack_order: Sequence | None = None,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> Heatmap | None:
    """Teacher and No-KD students (rows, ``family/model``) x attack AUC: the exposed model and the no-leakage
    reference side by side."""
    main = findings.main_rows(mia)
    rows = main[(main["role"] == "teacher") | (main["method"] == "nokd")]
    if rows.empty:
        return _skip("baselines", "no teacher or No-KD rows in the MIA table")
    pooled = findings.pool(rows, ["family", "model", "method", "attack"])
    pooled["row"] = pooled["family"].astype(str) + "/" + pooled["model"].astype(str)
    pooled = pooled.sort_values(
        ["family", "method"],
        key=lambda s: s.map(findings.method_sort_key) if s.name == "method" else s,
        kind="stable",
    )
    return heatmap(
        pooled,
        row="row",
        col="attack",
        value="auc",
        path=path,
        vmin=vmin,
        vmax=vmax,
        col_order=_attack_order(pooled["attack"], attack_order),
        title="Baselines: teacher (attacked directly) and No-KD students (no teacher): MIA ROC AUC",
        colorbar_label="ROC AUC",
    )


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
    findings.require(summary, ["family", "model", "metric", value], "memorization summary")
    main = findings.main_rows(summary)
    if "subset" in main.columns:
        main = main[main["subset"] == subset]
    main = main[main["metric"].isin(metrics)]
    if main.empty:
        return _skip(f"memorization {value}", f"no rows of metrics {list(metrics)} (subset {subset})")
    low, high = (
        ("member_ci_low", "member_ci_high")
        if value == "member_rate"
        else (f"{value}_ci_low", f"{value}_ci_high")
    )
    pooled = findings.pool(main, ["family", "model", "method", "metric"], value, low, high)
    pooled["row"] = _label(pooled)
    pooled = pooled.sort_values(
        ["family", "method"],
        key=lambda s: s.map(findings.method_sort_key) if s.name == "method" else s,
        kind="stable",
    )
    order = [m for m in metrics if m in set(pooled["metric"])]
    if value == "gap":
        d = float(np.nanmax(np.abs(pooled[value].to_numpy(float)))) if pooled[value].notna().any() else 0.0
        d = d if d > 0 else 0.01
        return heatmap(
            pooled,
            "row",
            "metric",
            value,
            path,
            vmin=-d,
            vmax=d,
            center=0.0,
            fmt="{:+.3f}",
            col_order=order,
            colorbar_label="member - non-member",
            title="Memorization gap (member minus non-member rate; 0 = no memorization of members)",
        )
    top = (
        _nice_ceiling(float(np.nanmax(pooled[value].to_numpy(float)))) if pooled[value].notna().any() else 1.0
    )
    return heatmap(
        pooled,
        "row",
        "metric",
        value,
        path,
        vmin=0.0,
        vmax=min(1.0, top),
        center=None,
        fmt="{:.3f}",
        cmap="Reds",
        col_order=order,
        colorbar_label="member rate",
        title="Memorization of the teacher's private examples (member rate per metric)",
    )


def utility_bars(
    utility: pd.DataFrame, path: str | os.PathLike, category: str = "ALL"
) -> pd.DataFrame | None:
    """ROUGE-L (x100) per model (``category`` row of ``utility.csv``), bars with 95% CIs."""
    findings.require(utility, ["family", "model", "category", "rouge_l"], "utility")
    main = findings.main_rows(utility)
    main = main[main["category"] == category]
    if main.empty:
        return _skip("utility", f"no utility rows for category {category!r}")
    pooled = findings.pool(
        main, ["family", "model", "method"], "rouge_l", "rouge_l_ci_low", "rouge_l_ci_high"
    )
    pooled = pooled.sort_values(
        ["family", "method"],
        key=lambda s: s.map(findings.method_sort_key) if s.name == "method" else s,
        kind="stable",
    ).reset_index(drop=True)
    pooled["label"] = _label(pooled)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.0 + 0.6 * len(pooled)), 3.6))
    x = np.arange(len(pooled))
    ax.bar(x, pooled["rouge_l"], color=["#7f7f7f" if m == "teacher" else "#4c72b0" for m in pooled["method"]])
    ax.errorbar(
        x,
        pooled["rouge_l"],
        yerr=_errors(pooled["rouge_l"], pooled["ci_low"], pooled["ci_high"]),
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    for xi, v in zip(x, pooled["rouge_l"]):
        if not pd.isna(v):
            ax.text(xi, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels=pooled["label"], rotation=45, ha="right")
    ax.set_ylabel("ROUGE-L (x100)")
    ax.set_title(_wrap("Utility: ROUGE-L of greedy answers on held-out dev prompts (95% CI)"), fontsize=10)
    _save(fig, path)
    return pooled[["family", "model", "method", "rouge_l", "ci_low", "ci_high", "n_seeds"]]


def block_curves(
    blocks: pd.DataFrame, path: str | os.PathLike, models: Sequence[str] | None = None
) -> pd.DataFrame | None:
    """Per-block MoPe AUC: block index (x) x AUC (y), one line per model (and noise scale when several),
    95% CI band. Configured models only (or ``models``)."""
    findings.require(blocks, ["family", "model", "block", "auc"], "blocks")
    main = findings.main_rows(blocks)
    if models is not None:
        main = main[main["model"].isin(list(models))]
    if main.empty:
        return _skip("blocks", "no per-block rows")
    keys = ["family", "model", "method"] + (["sigma"] if "sigma" in main.columns else []) + ["block"]
    main = main.assign(method=findings.col(main, "method"))
    pooled = findings.pool(main, keys)
    pooled = pooled.sort_values(
        ["family", "method"] + keys[3:],
        key=lambda s: s.map(findings.method_sort_key) if s.name == "method" else s,
        kind="stable",
    ).reset_index(drop=True)
    pooled["line"] = _label(pooled)
    if "sigma" in pooled.columns and pooled["sigma"].nunique() > 1:
        pooled["line"] = pooled["line"] + " (sigma " + pooled["sigma"].map("{:g}".format) + ")"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = plt.get_cmap("tab10")
    for i, (line, g) in enumerate(pooled.groupby("line", sort=False)):
        c = colors(i % 10)
        ax.plot(
            g["block"],
            g["auc"],
            marker="o",
            ms=3,
            color=c,
            label=line,
            lw=2.2 if (g["method"] == "teacher").all() else 1.3,
        )
        ax.fill_between(g["block"], g["ci_low"], g["ci_high"], color=c, alpha=0.12, lw=0)
        if len(g) == 1:  # a band needs two blocks: show the interval as a whisker
            ax.errorbar(
                g["block"],
                g["auc"],
                yerr=_errors(g["auc"], g["ci_low"], g["ci_high"]),
                fmt="none",
                ecolor=c,
                capsize=2,
                lw=0.8,
            )
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("decoder block (noise in this block only)")
    ax.set_ylabel("MoPe ROC AUC")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(
        _wrap("Per-block privacy risk: MoPe AUC with one block perturbed (band: 95% CI)"), fontsize=10
    )
    _outside_legend(ax)
    _save(fig, path)
    return pooled.drop(columns=["line"])


def objective_ablation(
    mia: pd.DataFrame,
    path: str | os.PathLike,
    attack_order: Sequence | None = None,
    sources: dict | None = None,
) -> pd.DataFrame | None:
    """Paper Fig. 3: AUC per KD objective (bars) and attack (groups), 95% CI error bars, one panel per
    family, from the rows with ``ablation == "objective"`` (plus the source student under its own objective
    when ``sources[family]["objective"] = {"student": name, "objective": obj}`` and ``obj`` is not an
    ablation value)."""
    abl = findings.ablation_rows(mia, "objective")
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
            rows = findings.source_rows(mia, family, src["student"])
            frames.append(rows.assign(objective=str(src["objective"])))
    if not frames:
        return _skip("objective ablation", "no rows with ablation == 'objective'")
    pooled = findings.pool(pd.concat(frames, ignore_index=True), ["family", "objective", "model", "attack"])
    families = list(dict.fromkeys(pooled["family"]))
    attacks = _attack_order(pooled["attack"], attack_order)
    fig, axes = plt.subplots(
        len(families), 1, figsize=(max(6.0, 1.2 + 0.8 * len(attacks)), 3.4 * len(families)), squeeze=False
    )
    for ax, family in zip(axes[:, 0], families):
        g = pooled[pooled["family"] == family]
        objectives = findings.ordered(g["objective"], ("fkl", "rkl", "jsd", "tvd", "sfkl", "srkl"))
        width = 0.8 / len(objectives)
        for i, obj in enumerate(objectives):
            o = g[g["objective"] == obj].set_index("attack").reindex(attacks)
            x = np.arange(len(attacks)) + (i - (len(objectives) - 1) / 2) * width
            ax.bar(x, o["auc"] - 0.5, width, bottom=0.5, label=obj)  # NaN: no bar
            ax.errorbar(
                x,
                o["auc"],
                yerr=_errors(o["auc"], o["ci_low"], o["ci_high"]),
                fmt="none",
                ecolor="black",
                capsize=2,
                lw=0.8,
            )
        ax.axhline(0.5, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(attacks)), labels=attacks, rotation=30, ha="right")
        ax.set_ylabel("ROC AUC (bars from 0.5)")
        ax.set_title(f"{family}: KD objective ablation (95% CI)", fontsize=10)
        ax.legend(title="objective", fontsize=7, title_fontsize=8, ncol=min(6, len(objectives)))
    _save(fig, path)
    return pooled


def sgo_ablation(
    mia: pd.DataFrame,
    path: str | os.PathLike,
    attack_order: Sequence | None = None,
    sources: dict | None = None,
) -> pd.DataFrame | None:
    """Paper Fig. 4: fraction of student-generated outputs (x) vs AUC (y), one line per attack with 95% CI
    error bars, one panel per family (rows with ``ablation == "sgo_ratio"``, plus the source student at its
    own ratio when ``sources[family]["sgo_ratio"] = {"student": name, "value": ratio}``)."""
    pooled = findings.sgo_points(mia, sources)
    if pooled.empty:
        return _skip("SGO ablation", "no rows with ablation == 'sgo_ratio'")
    families = list(dict.fromkeys(pooled["family"]))
    attacks = _attack_order(pooled["attack"], attack_order)
    fig, axes = plt.subplots(len(families), 1, figsize=(6.5, 3.8 * len(families)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, family in zip(axes[:, 0], families):
        g = pooled[pooled["family"] == family]
        present = [a for a in attacks if a in set(g["attack"])]
        span = float(g["ratio"].max() - g["ratio"].min()) or 1.0
        dodge = 0.012 * span
        for i, attack in enumerate(present):
            a = g[g["attack"] == attack].sort_values("ratio")
            ax.errorbar(
                a["ratio"] + (i - (len(present) - 1) / 2) * dodge,
                a["auc"],
                yerr=_errors(a["auc"], a["ci_low"], a["ci_high"]),
                marker="o",
                ms=3,
                capsize=2,
                lw=1.2,
                color=colors(i % 10),
                label=attack,
            )
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("fraction of student-generated outputs in the student's training data")
        ax.set_ylabel("ROC AUC")
        ax.set_title(f"{family}: SGO-ratio ablation (95% CI; points dodged sideways per attack)", fontsize=10)
        _outside_legend(ax)
    _save(fig, path)
    return pooled


def category_risk(
    category: pd.DataFrame,
    path: str | os.PathLike,
    attack: str,
    roles: Sequence[str] = ("teacher", "student"),
) -> pd.DataFrame | None:
    """Paper Fig. 6: per-task risk. AUC (x, 95% CI) of each model (markers) per Dolly category (rows, riskiest
    on top by mean student AUC) for one ``attack``, from ``mia_category.csv``; configured models only."""
    findings.require(category, ["family", "model", "attack", "category", "auc"], "mia_category")
    main = findings.main_rows(category)
    main = main[(main["attack"] == attack) & main["role"].isin(roles)]
    if main.empty:
        return _skip("category risk", f"no per-category rows for attack {attack!r}")
    pooled = findings.pool(main, ["family", "model", "method", "role", "category"])
    students = pooled[pooled["role"] == "student"]
    rank_base = students if students["auc"].notna().any() else pooled
    order = rank_base.groupby("category")["auc"].mean().sort_values(ascending=False, na_position="last")
    cats = list(order.index) + [c for c in dict.fromkeys(pooled["category"]) if c not in order.index]
    pooled = pooled.sort_values(
        ["family", "method"],
        key=lambda s: s.map(findings.method_sort_key) if s.name == "method" else s,
        kind="stable",
    ).reset_index(drop=True)
    pooled["label"] = _label(pooled)
    labels = list(dict.fromkeys(pooled["label"]))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.55 * len(cats) + 1.2)))
    step = 0.8 / max(1, len(labels))
    colors = plt.get_cmap("tab10")
    for i, label in enumerate(labels):
        g = pooled[pooled["label"] == label].set_index("category").reindex(cats)
        y = np.arange(len(cats)) + (i - (len(labels) - 1) / 2) * step
        ax.errorbar(
            g["auc"],
            y,
            xerr=_errors(g["auc"], g["ci_low"], g["ci_high"]),
            fmt="o",
            ms=3.5,
            capsize=0,
            lw=0.9,
            color=colors(i % 10),
            label=label,
        )
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_yticks(np.arange(len(cats)), labels=cats)
    ax.invert_yaxis()
    ax.set_xlabel(f"ROC AUC ({attack})")
    ax.set_title(
        _wrap(f"Per-task risk: {attack} AUC per Dolly category (95% CI; riskiest on top)"), fontsize=10
    )
    _outside_legend(ax)
    _save(fig, path)
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
    findings.require(roc, ["family", "model", "attack", "fpr", "tpr"], "ROC points")
    main = findings.main_rows(roc)
    main = main[main["attack"] == attack]
    if models is not None:
        main = main[main["model"].isin(list(models))]
    main = main[(main["fpr"] > 0) & (main["tpr"] > 0)]
    if main.empty:
        return _skip("ROC", f"no ROC points with FPR, TPR > 0 for attack {attack!r}")
    main = main.assign(seed=findings.col(main, "seed"), method=findings.col(main, "method"))
    main = main.sort_values(
        ["family", "method"],
        key=lambda s: s.map(findings.method_sort_key) if s.name == "method" else s,
        kind="stable",
    )
    main["label"] = _label(main)
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
    ax.set_title(_wrap(f"ROC, log-log ({attack}): the low-FPR regime"), fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)
    return main.drop(columns=["label"]).reset_index(drop=True)


def membership_vs_memorization(
    mia: pd.DataFrame, memorization: pd.DataFrame, path: str | os.PathLike, attack: str
) -> pd.DataFrame | None:
    """Paper Fig. 5's disagreement: per configured student, member match rate (x, ``memorization.csv``) vs
    AUC of ``attack`` (y), both with 95% CIs, points labelled by method; Spearman over KD methods per
    family/base in the legend."""
    students = findings.main_rows(mia)
    students = students[(students["role"] == "student") & (students["attack"] == attack)]
    memo = findings.main_rows(memorization)
    memo = memo[memo["role"] == "student"] if "role" in memo.columns else memo
    if students.empty or memo.empty:
        return _skip(
            "membership vs memorization", f"no student rows for attack {attack!r} or no memorization"
        )
    keys = ["family", "base", "model", "method"]
    a = findings.pool(students.assign(base=findings.col(students, "base")), keys)
    m = findings.pool(
        memo.assign(base=findings.col(memo, "base"), method=findings.col(memo, "method")),
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
        return _skip("membership vs memorization", "no student has both an AUC and a member match rate")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = plt.get_cmap("tab10")
    for i, ((family, base), g) in enumerate(both.groupby(["family", "base"], sort=False, dropna=False)):
        kd = g[g["method"].isin(findings.KD_METHODS)]
        rho = findings.spearman(kd["member_rate"], kd["auc"]) if len(kd) >= 2 else math.nan
        ax.errorbar(
            g["member_rate"],
            g["auc"],
            xerr=_errors(g["member_rate"], g["member_rate_ci_low"], g["member_rate_ci_high"]),
            yerr=_errors(g["auc"], g["ci_low"], g["ci_high"]),
            fmt="o",
            ms=4,
            lw=0.8,
            capsize=2,
            color=colors(i % 10),
            label=f"{family}/{base} (Spearman over KD methods: "
            f"{'n/a' if math.isnan(rho) else f'{rho:+.2f}'})",
        )
        for r in g.itertuples(index=False):
            ax.annotate(
                r.method, (r.member_rate, r.auc), textcoords="offset points", xytext=(4, 3), fontsize=7
            )
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("member match rate (memorization)")
    ax.set_ylabel(f"ROC AUC ({attack})")
    ax.set_title(
        _wrap("Membership vs memorization per student: do they rank methods alike? (95% CI)"), fontsize=10
    )
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    return both.reset_index(drop=True)


def privacy_vs_utility(
    mia: pd.DataFrame, utility: pd.DataFrame, path: str | os.PathLike, category: str = "ALL"
) -> pd.DataFrame | None:
    """Per configured model: ROUGE-L x100 (x, ``category`` row of ``utility.csv``) vs its best-attack AUC
    (y: the attack with the highest seed-pooled AUC for that model), 95% CIs."""
    main = findings.main_rows(mia)
    util = findings.main_rows(utility)
    util = util[util["category"] == category] if "category" in util.columns else util
    if main.empty or util.empty:
        return _skip("privacy vs utility", "no MIA or utility rows")
    keys = ["family", "model", "method"]
    a = findings.pool(main, [*keys, "attack"]).dropna(subset=["auc"])
    if a.empty:
        return _skip("privacy vs utility", "no AUC values")
    best = a.loc[a.groupby(["family", "model"], sort=False)["auc"].idxmax()].rename(
        columns={"attack": "best_attack"}
    )
    u = findings.pool(
        util.assign(method=findings.col(util, "method")),
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
        return _skip("privacy vs utility", "no model has both an AUC and a ROUGE-L")
    both["label"] = _label(both)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in both.itertuples(index=False):
        color = "#7f7f7f" if r.method == "teacher" else ("#55a868" if r.method == "nokd" else "#4c72b0")
        ax.errorbar(
            [r.rouge_l],
            [r.auc],
            xerr=_errors([r.rouge_l], [r.rouge_l_ci_low], [r.rouge_l_ci_high]),
            yerr=_errors([r.auc], [r.ci_low], [r.ci_high]),
            fmt="o",
            ms=4,
            lw=0.8,
            capsize=2,
            color=color,
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
    ax.set_ylabel("privacy risk: best-attack ROC AUC")
    ax.set_title(_wrap("Privacy vs utility per model (grey: teacher, green: No-KD; 95% CI)"), fontsize=10)
    _save(fig, path)
    return both.drop(columns=["label"]).reset_index(drop=True)
