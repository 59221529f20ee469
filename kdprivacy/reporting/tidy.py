"""Reading the tidy tables under ``results/tables/``: configured models vs ablation copies, values pooled over
training seeds, and the order methods are shown in.

Every claim, figure and the paper comparison read the tables through these helpers, so a model's value and
interval are computed one way everywhere (:func:`pool`: the mean over seeds; the per-seed 95% interval for one
seed, the envelope of the per-seed intervals for several).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdprivacy.kd import KD_METHODS, METHODS

METHOD_ORDER = ("teacher", *METHODS)
"""How methods are ordered in tables and figures: the teacher, then the registry's order."""


def col(table: pd.DataFrame, name: str | None) -> pd.Series:
    """``table[name]``, or an all-NaN column when the table has no such column."""
    return table[name] if name in table.columns else pd.Series([np.nan] * len(table), index=table.index)


def main_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of configured models (teacher, students); ablation copies (``ablation`` set) dropped."""
    return table[col(table, "ablation").isna()]


def ablation_rows(table: pd.DataFrame, axis: str) -> pd.DataFrame:
    return table[col(table, "ablation").astype(object) == axis]


def require(table: pd.DataFrame, columns: Iterable[str], what: str = "table") -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")


def pool(
    table: pd.DataFrame,
    keys: Sequence[str],
    value: str = "auc",
    low: str | None = "auc_ci_low",
    high: str | None = "auc_ci_high",
) -> pd.DataFrame:
    """One row per ``keys`` group: ``value`` = mean over seeds (NaN if any seed is NaN), ``ci_low`` /
    ``ci_high`` = the interval rule of the module docstring, ``n_seeds``. Order: first appearance."""
    keys = list(keys)
    require(table, [*keys, value])
    columns = [*keys, value, "ci_low", "ci_high", "n_seeds"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    frame = table.assign(
        _v=pd.to_numeric(table[value], errors="coerce"),
        _lo=pd.to_numeric(col(table, low), errors="coerce") if low else np.nan,
        _hi=pd.to_numeric(col(table, high), errors="coerce") if high else np.nan,
    )
    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        v, lo, hi = group["_v"].to_numpy(float), group["_lo"].to_numpy(float), group["_hi"].to_numpy(float)
        n = len(group)
        mean = math.nan if np.isnan(v).any() else float(v.mean())
        if n == 1:
            ci = (float(lo[0]), float(hi[0]))
        else:
            ci = (
                (math.nan, math.nan)
                if np.isnan(lo).any() or np.isnan(hi).any()
                else (float(lo.min()), float(hi.max()))
            )
        rows.append([*key, mean, *ci, n])
    out = pd.DataFrame(rows, columns=columns)
    return out


def method_sort_key(method: Any) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def by_method(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` sorted (stable) by ``columns``, the ``method`` column in :data:`METHOD_ORDER`."""
    return frame.sort_values(
        list(columns),
        key=lambda s: s.map(method_sort_key) if s.name == "method" else s,
        kind="stable",
    )


def ordered(values: Iterable, preferred: Sequence | None = None) -> list:
    """Distinct ``values`` in first-appearance order, those in ``preferred`` first in its order."""
    seen = list(dict.fromkeys(v for v in values if not (isinstance(v, float) and math.isnan(v))))
    if not preferred:
        return seen
    return [p for p in preferred if p in seen] + [v for v in seen if v not in preferred]


def with_model_keys(
    frame: pd.DataFrame, spec: Mapping[str, Any], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """``frame`` (changed in place) with a model's key columns (``columns`` of ``spec``, default all of it:
    family, seed, model, ...) inserted in front, in that order."""
    for column in reversed(list(spec if columns is None else columns)):
        frame.insert(0, column, spec[column])
    return frame


def source_rows(mia: pd.DataFrame, family: str, student: str | None) -> pd.DataFrame:
    if not student:
        return mia.iloc[0:0]
    main = main_rows(mia)
    return main[(main["family"] == family) & (main["model"] == student)]


def configured_students(mia: pd.DataFrame) -> pd.DataFrame:
    return main_rows(mia)[col(main_rows(mia), "role").astype(object) == "student"]


def kd_method_auc(mia: pd.DataFrame) -> pd.DataFrame:
    """Pooled AUC per (family, base, method, model, attack) of the configured KD students."""
    kd = configured_students(mia)
    kd = kd[kd["method"].isin(KD_METHODS)]
    if kd.empty:
        return pd.DataFrame(
            columns=["family", "base", "method", "model", "attack", "auc", "ci_low", "ci_high", "n_seeds"]
        )
    return pool(kd.assign(base=col(kd, "base")), ["family", "base", "method", "model", "attack"])


def sgo_points(mia: pd.DataFrame, sources: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Pooled ``family, ratio, model, attack, auc, ci_low, ci_high, n_seeds`` of the SGO ablation (plus the
    source student at ``sources[family]["sgo_ratio"] = {"student": name, "value": ratio}`` when that ratio
    is not an ablation value already)."""
    abl = ablation_rows(mia, "sgo_ratio")
    frames = []
    if not abl.empty:
        frames.append(abl.assign(ratio=pd.to_numeric(abl["ablation_value"], errors="coerce")))
    for family, spec in (sources or {}).items():
        src = (spec or {}).get("sgo_ratio") or {}
        if src.get("student") is None or src.get("value") is None:
            continue
        have = set(frames[0][frames[0]["family"] == family]["ratio"]) if frames else set()
        if float(src["value"]) in have:
            continue
        rows = source_rows(mia, family, src["student"])
        if not rows.empty:
            frames.append(rows.assign(ratio=float(src["value"])))
    if not frames:
        return pd.DataFrame(
            columns=["family", "ratio", "model", "attack", "auc", "ci_low", "ci_high", "n_seeds"]
        )
    frame = pd.concat(frames, ignore_index=True)
    frame = frame.dropna(subset=["ratio"])
    out = pool(frame, ["family", "ratio", "model", "attack"])
    return out.sort_values(["family", "ratio"], kind="stable").reset_index(drop=True)
