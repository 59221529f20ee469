"""What every figure shares: the annotated heatmap, notices for figures a run cannot fill, error bars,
labels, saving. Matplotlib with the Agg backend (no display); files written atomically via
:mod:`kdprivacy.io`.

The study figures (the other modules of this package) each take a tidy table (as written under
results/tables/) and a path, write the figure and return what they drew (a :class:`Heatmap`, or a DataFrame
of the plotted points), or return None without writing when the table holds nothing for the figure (the
reason is logged). Values are pooled over seeds by :func:`kdprivacy.reporting.tidy.pool`. Cells without a row
stay blank; nothing is filled in.
"""

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

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting import tidy  # noqa: E402

MISSING_COLOR = "#d9d9d9"
"""Background of cells without a value (no number is printed there)."""


log = logging.getLogger("kdprivacy.reporting.plots")


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


def skip(name: str, reason: str) -> None:
    log.info("figure %s skipped: %s", name, reason)
    return None


def error_bars(y, lo, hi) -> np.ndarray:
    """Error-bar lengths below/above ``y``; 0 where there is no interval (nothing is drawn there)."""
    y, lo, hi = (np.asarray(v, dtype=np.float64) for v in (y, lo, hi))
    below = np.where(np.isnan(lo), 0.0, np.clip(y - lo, 0.0, None))
    above = np.where(np.isnan(hi), 0.0, np.clip(hi - y, 0.0, None))
    return np.vstack([below, above])


def ci_errorbar(ax, x, y, y_ci=None, x_ci=None, **style):
    """``ax.errorbar`` of the points (``x``, ``y``) with bars spanning the 95% CIs ``y_ci`` / ``x_ci``
    (``(low, high)`` of that coordinate; :func:`error_bars`: no bar where there is no interval)."""
    if x_ci is not None:
        style["xerr"] = error_bars(x, *x_ci)
    if y_ci is not None:
        style["yerr"] = error_bars(y, *y_ci)
    return ax.errorbar(x, y, **style)


def model_labels(frame: pd.DataFrame) -> pd.Series:
    """``model`` when one family is present, ``family/model`` otherwise."""
    if frame["family"].nunique() > 1:
        return frame["family"].astype(str) + "/" + frame["model"].astype(str)
    return frame["model"].astype(str)


def save(fig, path) -> None:
    try:
        fig.tight_layout()
        io.write_figure(fig, path, dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)


def outside_legend(ax, **kwargs) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``x`` (colour limits of data-driven scales)."""
    if not x > 0:
        return 0.01
    k = math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**k >= x - 1e-12:
            return m * 10**k
    return 10 ** (k + 1)


def wrap_title(title: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(title, width=width))


def placeholder(path: str | os.PathLike, title: str, reason: str) -> None:
    """A small figure that says why there is nothing to show (for declared outputs a run cannot fill)."""
    fig, ax = plt.subplots(figsize=(5, 1.8))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", va="center", fontsize=10, weight="bold")
    ax.text(
        0.5, 0.3, wrap_title(f"Not available in this run: {reason}", 60), ha="center", va="center", fontsize=8
    )
    save(fig, path)


def attack_columns(present: Sequence, attack_order: Sequence | None) -> list:
    return tidy.ordered(present, attack_order)
