"""Claims along an axis a study varies: student size, the KD objective (reverse- vs forward-KL) and the
fraction of student-generated outputs (SGO).

The size of a student comes from the config (``base_sizes``) or, failing that, from its base name. The
objective and SGO claims read the ablation copies plus the ablation's source student at its own setting
(``sources``, built by the report rules); see :func:`kdprivacy.reporting.claims.compute_findings`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from kdprivacy.kd import REVERSE_OBJECTIVES
from kdprivacy.reporting.tidy import ablation_rows, col, configured_students, pool, sgo_points, source_rows
from kdprivacy.reporting.verdicts import above, below, fmt, fmt_ci, make_row, seeds_note, spearman, untestable
from kdprivacy.stats import approx_diff_ci, se_from_ci

GPT2_SIZES = {
    "distilgpt2": 82e6,
    "gpt2": 124e6,
    "base": 124e6,
    "small": 124e6,
    "medium": 355e6,
    "large": 774e6,
    "xl": 1.56e9,
}


def size_from_name(name: str, family: str = "") -> float | None:
    """Parameter count read off a base name: ``125m``, ``1.3b``, ``opt-350m``, ``7B`` ...; in a family whose
    name contains ``gpt2``, also the GPT-2 words (``gpt2``/``base``/``small``, ``medium``, ``large``, ``xl``).
    None when the name says nothing."""
    text = str(name).lower()
    match = re.search(r"(?<![a-z])(\d+(?:\.\d+)?)\s*([mb])(?![a-z])", text)
    if match:
        return float(match.group(1)) * (1e6 if match.group(2) == "m" else 1e9)
    if "gpt2" in str(family).lower() or "gpt2" in text:
        token = re.split(r"[/_\-]", text)[-1]
        return GPT2_SIZES.get(token, GPT2_SIZES["gpt2"] if token == "gpt2" else None)
    return None


def student_sizes(mia: pd.DataFrame, sizes: Mapping[str, Mapping[str, float]] | None) -> dict[tuple, tuple]:
    """(family, base) -> (size, source). Config sizes first, then sizes read off the base names."""
    out = {}
    students = configured_students(mia)
    for family, base in students[["family", "base"]].drop_duplicates().itertuples(index=False):
        given = (sizes or {}).get(family, {}).get(base)
        if given is not None:
            out[(family, base)] = (float(given), "config")
        else:
            guess = size_from_name(base, family)
            if guess is not None:
                out[(family, base)] = (guess, "base name")
    return out


def larger_students(mia: pd.DataFrame, sizes: Mapping[str, Mapping[str, float]] | None = None) -> list[dict]:
    """``larger_students_leak_more``: per (family, method, attack), largest minus smallest base."""
    claim, statistic = "larger_students_leak_more", "auc(largest) - auc(smallest)"
    rows = []
    known = student_sizes(mia, sizes)
    students = configured_students(mia)
    if students.empty:
        return rows
    pooled = pool(
        students.assign(base=col(students, "base")), ["family", "method", "base", "model", "attack"]
    )
    for family, fam in pooled.groupby("family", sort=False):
        bases = list(dict.fromkeys(fam["base"]))
        sized = [b for b in bases if (family, b) in known]
        unsized = [b for b in bases if (family, b) not in known]
        distinct = {known[(family, b)][0] for b in sized}
        if len(distinct) < 2:
            why = (
                f"student bases {bases}"
                + (f" (no size for {unsized}; give attacks/base_sizes)" if unsized else "")
                + ": fewer than two sizes, not testable"
            )
            rows.append(untestable(claim, f"{family}", statistic, why, n=len(distinct)))
            continue
        for (method, attack), g in fam.groupby(["method", "attack"], sort=False):
            g = g[g["base"].isin(sized)].dropna(subset=["auc"])
            g = g.assign(size=[known[(family, b)][0] for b in g["base"]])
            scope = f"{family}/{method}/{attack}"
            if g["size"].nunique() < 2:
                why = f"{method} trained on fewer than two sized bases: not testable"
                rows.append(untestable(claim, scope, statistic, why, n=len(g)))
                continue
            g = g.sort_values("size", kind="stable")
            small, large = g.iloc[0], g.iloc[-1]
            diff = float(large["auc"] - small["auc"])
            lo, hi = approx_diff_ci(
                large["auc"], large["ci_low"], large["ci_high"],
                small["auc"], small["ci_low"], small["ci_high"],
            )
            ok, why = above(lo, hi)
            rho = spearman(g["size"], g["auc"])
            detail = (
                f"{method}/{attack}: "
                + ", ".join(
                    f"{b} ({s:.3g} params, {known[(family, b)][1]}) {fmt(a)}"
                    for b, s, a in zip(g["base"], g["size"], g["auc"])
                )
                + f"; largest - smallest {diff:+.3f} {fmt_ci(lo, hi)} (approximate, unpaired); "
                f"Spearman(size, AUC) {fmt(rho, 2)}; {why}"
            )
            rows.append(make_row(claim, "cell", scope, statistic, diff, lo, hi, len(g), ok, detail))
    return rows


def reverse_kl(
    mia: pd.DataFrame,
    paired: pd.DataFrame | None = None,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict]:
    """``reverse_kl_leaks_less``: per (family, objective in rkl/srkl, attack), AUC minus forward-KL AUC.

    The forward-KL reference is the ablation copy with objective ``fkl`` or, when ``sources[family]
    ["objective"] == {"student": name, "objective": "fkl"}``, the source student itself. A paired row of
    ``mia_paired`` (model = the rkl copy, comparator = the fkl model) is used when there is one.
    """
    claim, statistic = "reverse_kl_leaks_less", "auc(reverse) - auc(fkl)"
    rows = []
    abl = ablation_rows(mia, "objective")
    families = list(dict.fromkeys(abl["family"])) if not abl.empty else []
    for family in families:
        fam = abl[abl["family"] == family]
        fam = fam.assign(objective=fam["ablation_value"].astype(str))
        src_cfg = ((sources or {}).get(family) or {}).get("objective") or {}
        reference = fam[fam["objective"] == "fkl"]
        ref_note = "ablation copy with objective fkl"
        if reference.empty and src_cfg.get("objective") == "fkl":
            reference = source_rows(mia, family, src_cfg.get("student")).assign(objective="fkl")
            ref_note = f"source student {src_cfg.get('student')} (objective fkl)"
        reverse = fam[fam["objective"].isin(REVERSE_OBJECTIVES)]
        if reverse.empty or reference.empty:
            have = sorted(set(fam["objective"]))
            why = (
                f"objectives present {have}"
                + (
                    ""
                    if not reference.empty
                    else ", no forward-KL reference (add fkl to the ablation or name the source's objective)"
                )
                + ("" if not reverse.empty else ", no rkl/srkl copy")
                + ": not testable"
            )
            rows.append(untestable(claim, family, statistic, why))
            continue
        ref = pool(reference, ["model", "attack"]).set_index("attack")
        rev = pool(reverse, ["objective", "model", "attack"])
        for r in rev.itertuples(index=False):
            if r.attack not in ref.index:
                continue
            f = ref.loc[r.attack]
            scope = f"{family}/{r.objective}/{r.attack}"
            diff, lo, hi, how = r.auc - f["auc"], math.nan, math.nan, "approximate, unpaired"
            pair = _paired_row(paired, family, r.model, f["model"], r.attack)
            common = _via_common(paired, family, r.model, f["model"], r.attack)
            if pair is not None:
                diff, lo, hi, how = pair[0], pair[1], pair[2], "paired bootstrap"
            elif common is not None:
                diff, lo, hi, how = (
                    common[0],
                    common[1],
                    common[2],
                    (
                        f"difference of the two paired differences vs No-KD {common[3]}, intervals "
                        f"combined in "
                        f"quadrature: approximate, conservative"
                    ),
                )
            else:
                lo, hi = approx_diff_ci(r.auc, r.ci_low, r.ci_high, f["auc"], f["ci_low"], f["ci_high"])
            ok, why = below(lo, hi)
            detail = (
                f"{r.objective} ({r.model}) {fmt(r.auc)} vs fkl ({ref_note}) {fmt(f['auc'])}: {diff:+.3f} "
                f"{fmt_ci(lo, hi)} ({how}; {seeds_note(int(r.n_seeds))}); {why}"
            )
            n = int(r.n_seeds)
            rows.append(make_row(claim, "cell", scope, statistic, float(diff), lo, hi, n, ok, detail))
    return rows


def _paired_row(paired: pd.DataFrame | None, family: str, model: str, comparator: str, attack: str):
    if paired is None or paired.empty or "comparator" not in paired.columns:
        return None
    hit = paired[
        (paired["family"] == family)
        & (paired["model"] == model)
        & (paired["comparator"] == comparator)
        & (paired["attack"] == attack)
    ]
    if hit.empty:
        return None
    p = _pooled_diff(hit)
    return float(p["auc_diff"]), float(p["ci_low"]), float(p["ci_high"])


def _pooled_diff(rows: pd.DataFrame) -> pd.Series:
    """The seed-pooled paired AUC difference (``auc_diff, ci_low, ci_high``) of one attack's paired rows."""
    return pool(rows, ["attack"], "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high").iloc[0]


def _via_common(paired: pd.DataFrame | None, family: str, model_a: str, model_b: str, attack: str):
    """``a - b`` through their paired differences vs the same No-KD comparator: ``(a - c) - (b - c)``,
    95% interval from the two paired intervals in quadrature. None when either lacks such a row."""
    if paired is None or paired.empty or "comparator" not in paired.columns:
        return None
    vs = paired[
        (paired["family"] == family)
        & (paired["attack"] == attack)
        & (paired["comparison"].astype(object) == "nokd")
    ]
    a, b = vs[vs["model"] == model_a], vs[vs["model"] == model_b]
    for comparator in dict.fromkeys(a["comparator"]):
        if comparator in set(b["comparator"]):
            pa = _pooled_diff(a[a["comparator"] == comparator])
            pb = _pooled_diff(b[b["comparator"] == comparator])
            lo, hi = approx_diff_ci(
                pa["auc_diff"], pa["ci_low"], pa["ci_high"], pb["auc_diff"], pb["ci_low"], pb["ci_high"]
            )
            return float(pa["auc_diff"] - pb["auc_diff"]), lo, hi, comparator
    return None


def slope_with_ci(x, y, lo, hi, n_draws: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """OLS slope of ``y`` on ``x`` and a parametric-bootstrap 95% interval (each y ~ N(y, se from its CI))."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope = float(np.polyfit(x, y, 1)[0])
    se = se_from_ci(np.asarray(lo, float), np.asarray(hi, float))
    if np.isnan(se).any():
        return slope, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = y + rng.standard_normal((n_draws, len(y))) * se
    xc = x - x.mean()
    slopes = (draws - draws.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return slope, float(np.quantile(slopes, 0.025)), float(np.quantile(slopes, 0.975))


def more_sgo(mia: pd.DataFrame, sources: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict]:
    """``more_sgo_leaks_more``: per (family, attack), slope of AUC over the SGO ratio."""
    claim, statistic = "more_sgo_leaks_more", "slope of auc over sgo ratio"
    rows = []
    points = sgo_points(mia, sources)
    for (family, attack), g in points.groupby(["family", "attack"], sort=False):
        g = g.dropna(subset=["auc"])
        scope = f"{family}/{attack}"
        if g["ratio"].nunique() < 2:
            why = "fewer than two SGO ratios: not testable"
            rows.append(untestable(claim, scope, statistic, why, n=len(g)))
            continue
        slope, lo, hi = slope_with_ci(g["ratio"], g["auc"], g["ci_low"], g["ci_high"])
        ok, why = above(lo, hi)
        rho = spearman(g["ratio"], g["auc"])
        detail = (
            "AUC by ratio: "
            + ", ".join(f"{x:g}: {fmt(a)}" for x, a in zip(g["ratio"], g["auc"]))
            + f"; OLS slope {slope:+.3f} per unit ratio {fmt_ci(lo, hi)} (parametric bootstrap over the "
            f"per-point CIs); Spearman {fmt(rho, 2)}; {why}"
        )
        rows.append(make_row(claim, "cell", scope, statistic, slope, lo, hi, len(g), ok, detail))
    if points.empty:
        for family in dict.fromkeys(mia["family"]) if "family" in mia.columns else []:
            why = "no SGO-ratio ablation rows: not testable"
            rows.append(untestable(claim, f"{family}", statistic, why, n=0))
    return rows
