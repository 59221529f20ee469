"""Findings computed from the tidy tables: each of the study's claims, tested on this run's numbers.

:func:`compute_findings` returns one tidy table with columns :data:`COLUMNS`:

``claim``       the claim's id (:data:`CLAIMS` says what each one means)
``level``       ``cell`` (one model / attack / ...) or ``summary`` (one per family: the share of testable
                cells where the claim holds)
``scope``       what the row is about, ``family/model/attack``-style (``gpt2/kd-small/loss``)
``statistic``   what ``value`` is (e.g. ``auc(model) - auc(nokd)``)
``value``, ``ci_low``, ``ci_high``   the number and its 95% interval (NaN where there is none)
``n``           what the number rests on (seeds, examples, methods, cells: said in ``detail``)
``supported``   True / False when this run can test the claim, None when it cannot (missing models,
                too few points, no interval)
``detail``      the numbers in words and whether the interval supports the claim

Rules used throughout (stated once):

- Only rows of the tables are used; nothing is filled in. Ablation copies (``ablation`` set) enter only
  the ablation claims.
- **Seeds**: a model's value is the mean over its training seeds; its interval is the per-seed 95%
  bootstrap interval for one seed and, for several seeds, the envelope ``[min ci_low, max ci_high]`` of the
  per-seed intervals (conservative: it covers the example resampling of every seed and the seed spread).
- A claim about a difference is **supported** when its interval excludes 0 on the claimed side; an interval
  that contains 0 (or points the other way) gives ``False`` with the reason in ``detail``.
- Paired differences come from ``mia_paired.csv`` (same examples, joint bootstrap). Where a comparison has
  no paired row (e.g. student sizes, objective copies vs. their source), the interval is the normal
  approximation ``d +- 1.96 sqrt(se_a^2 + se_b^2)`` with ``se = (ci_high - ci_low) / 3.92`` of each model:
  marked *approximate, unpaired* in ``detail`` (conservative when both models are scored on the same
  examples, as they are here).
- A summary row is supported when the claim holds in more than half of its family's testable cells.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["claim", "level", "scope", "statistic", "value", "ci_low", "ci_high", "n", "supported", "detail"]
Z95 = 1.959963984540054
METHOD_ORDER = ("teacher", "nokd", "kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")
KD_METHODS = ("kd", "seqkd", "imitkd", "gkd", "minillm", "distillm")
REFERENCE_ATTACKS = ("ref_external", "ref_pretrained", "ref_nokd", "rmia")
RISKY_CATEGORIES = ("creative_writing", "general_qa", "brainstorming")
SAFE_CATEGORIES = ("classification", "summarization", "closed_qa")
REVERSE_OBJECTIVES = ("rkl", "srkl")
TOP_LEAKERS = ("imitkd", "seqkd", "kd")

CLAIMS: dict[str, str] = {
    "kd_leaks_more_than_nokd": "a KD student's AUC is above the No-KD student's (paired, same examples)",
    "kd_method_ranking": "KD methods ranked by AUC per attack (descriptive; paired difference vs No-KD)",
    "top_leakers_imitkd_seqkd_kd": "the most-leaking KD method is ImitKD, SeqKD or KD",
    "minillm_leaks_least": "MiniLLM has the lowest AUC among the KD methods",
    "larger_students_leak_more": "the largest student base has a higher AUC than the smallest (same method)",
    "reverse_kl_leaks_less": "reverse-KL-style objectives (rkl, srkl) give a lower AUC than forward KL",
    "more_sgo_leaks_more": "AUC rises with the fraction of student-generated outputs (slope > 0)",
    "teacher_leaks_more_than_students": "the teacher's AUC is above its student's (paired, same examples)",
    "reference_attacks_strongest": "a reference-based attack has the highest mean student AUC",
    "nokd_near_chance": "the No-KD student's AUC interval contains 0.5",
    "blind_baseline_near_chance": "the model-free blind baseline's AUC interval contains 0.5",
    "memorization_gap_positive": "member match rate minus non-member match rate is above 0",
    "distillm_memorizes_most": "DistiLLM has the highest member match rate among the KD methods",
    "membership_memorization_disagree": "per-method AUC and memorization rate rank methods differently "
    "(Spearman rank agreement not significant)",
    "category_risk_order": "creative writing, general QA, brainstorming have a higher mean AUC than "
    "classification, summarization, closed QA",
    "block_risk_varies": "per-block MoPe AUC differs between blocks (intervals of the highest and lowest "
    "block do not overlap)",
}


# ------------------------------------------------------------------------------------------ table helpers
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


def ordered(values: Iterable, preferred: Sequence | None = None) -> list:
    """Distinct ``values`` in first-appearance order, those in ``preferred`` first in its order."""
    seen = list(dict.fromkeys(v for v in values if not (isinstance(v, float) and math.isnan(v))))
    if not preferred:
        return seen
    return [p for p in preferred if p in seen] + [v for v in seen if v not in preferred]


def se_from_ci(low: float, high: float) -> float:
    return (high - low) / (2 * Z95)


def approx_diff_ci(
    a: float, a_lo: float, a_hi: float, b: float, b_lo: float, b_hi: float
) -> tuple[float, float]:
    """Normal-approximation interval of ``a - b`` from two independent 95% intervals (NaN if one lacks)."""
    if any(math.isnan(x) for x in (a, a_lo, a_hi, b, b_lo, b_hi)):
        return math.nan, math.nan
    half = Z95 * math.hypot(se_from_ci(a_lo, a_hi), se_from_ci(b_lo, b_hi))
    return a - b - half, a - b + half


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either side is constant or n < 2."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_p_greater(x: Sequence[float], y: Sequence[float], n_perm: int = 20000, seed: int = 0) -> float:
    """One-sided permutation p-value of Spearman rho >= observed (exact for n <= 8)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    observed = spearman(x, y)
    if math.isnan(observed):
        return math.nan
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if len(x) <= 8:
        perms = (np.array(p) for p in itertools.permutations(range(len(y))))
        stats = [np.corrcoef(rx, ry[p])[0, 1] for p in perms]
    else:
        rng = np.random.default_rng(seed)
        stats = [np.corrcoef(rx, rng.permutation(ry))[0, 1] for _ in range(n_perm)]
    stats = np.asarray(stats)
    return float(np.mean(stats >= observed - 1e-12))


def as_bool(x: Any) -> bool | None:
    """True/False/None from a bool, a NaN/None (None) or text read back from a CSV ("True", "false", "")."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return None
    if isinstance(x, str):
        low = x.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        if low in ("", "nan", "none", "na", "<na>"):
            return None
        raise ValueError(f"not a truth value: {x!r}")
    return bool(x)


def fmt(x: float, digits: int = 3) -> str:
    return "NaN" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_ci(lo: float, hi: float) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def seeds_note(n_seeds: int) -> str:
    return "1 seed" if n_seeds == 1 else f"mean of {n_seeds} seeds, interval = envelope of per-seed CIs"


def make_row(
    claim,
    level,
    scope,
    statistic,
    value,
    ci_low=math.nan,
    ci_high=math.nan,
    n=math.nan,
    supported=None,
    detail="",
) -> dict:
    return {
        "claim": claim,
        "level": level,
        "scope": scope,
        "statistic": statistic,
        "value": value,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "n": n,
        "supported": supported,
        "detail": detail,
    }


def _greater(lo: float, hi: float, threshold: float = 0.0) -> tuple[bool | None, str]:
    """Whether an interval says 'above threshold'; None when there is no interval."""
    if math.isnan(lo) or math.isnan(hi):
        return None, "no interval, not testable"
    if lo > threshold:
        return True, f"the CI excludes {threshold:g}: supported"
    if hi < threshold:
        return False, f"the CI lies below {threshold:g}: the opposite holds"
    return False, f"the CI contains {threshold:g}: not supported at 95%"


def _less(lo: float, hi: float, threshold: float = 0.0) -> tuple[bool | None, str]:
    if math.isnan(lo) or math.isnan(hi):
        return None, "no interval, not testable"
    if hi < threshold:
        return True, f"the CI excludes {threshold:g}: supported"
    if lo > threshold:
        return False, f"the CI lies above {threshold:g}: the opposite holds"
    return False, f"the CI contains {threshold:g}: not supported at 95%"


def summarize(rows: list[dict], claim: str, family: str, effect: str = "") -> dict:
    """The family's summary row of ``claim``: share of testable cells where it holds (majority rule)."""
    cells = [
        r for r in rows if r["claim"] == claim and r["level"] == "cell" and r["scope"].split("/")[0] == family
    ]
    testable = [r for r in cells if r["supported"] is not None]
    if not testable:
        return make_row(
            claim,
            "summary",
            family,
            "share of testable cells supported",
            math.nan,
            n=0,
            supported=None,
            detail=f"{len(cells)} cells, none testable: not testable in this run",
        )
    k = sum(bool(r["supported"]) for r in testable)
    share = k / len(testable)
    values = np.array([r["value"] for r in testable], float)
    mean = (
        f"; mean {effect or 'value'} {fmt(float(np.nanmean(values)))}" if not np.isnan(values).all() else ""
    )
    return make_row(
        claim,
        "summary",
        family,
        "share of testable cells supported",
        share,
        n=len(testable),
        supported=share > 0.5,
        detail=f"holds in {k} of {len(testable)} testable cells ({len(cells) - len(testable)} not "
        f"testable){mean}; majority rule: {'supported' if share > 0.5 else 'not supported'}",
    )


# ------------------------------------------------------------------------------------------ claims
def _students(mia: pd.DataFrame) -> pd.DataFrame:
    return main_rows(mia)[col(main_rows(mia), "role").astype(object) == "student"]


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
        ok, why = _greater(r.ci_low, r.ci_high)
        rows.append(
            make_row(
                "kd_leaks_more_than_nokd",
                "cell",
                f"{r.family}/{r.model}/{r.attack}",
                "auc(model) - auc(nokd)",
                r.auc_diff,
                r.ci_low,
                r.ci_high,
                r.n_seeds,
                ok,
                f"{r.model} ({r.method}) AUC {fmt(r.auc_model)} vs No-KD {r.comparator} "
                f"{fmt(r.auc_comparator)}: "
                f"difference {r.auc_diff:+.3f} {fmt_ci(r.ci_low, r.ci_high)} (paired bootstrap; "
                f"{seeds_note(r.n_seeds)}); {why}",
            )
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


def _per_method(mia: pd.DataFrame) -> pd.DataFrame:
    """Pooled AUC per (family, base, method, model, attack) of the configured KD students."""
    kd = _students(mia)
    kd = kd[kd["method"].isin(KD_METHODS)]
    if kd.empty:
        return pd.DataFrame(
            columns=["family", "base", "method", "model", "attack", "auc", "ci_low", "ci_high", "n_seeds"]
        )
    return pool(kd.assign(base=col(kd, "base")), ["family", "base", "method", "model", "attack"])


def method_extremes(mia: pd.DataFrame) -> list[dict]:
    """``top_leakers_imitkd_seqkd_kd`` and ``minillm_leaks_least`` per (family, base, attack)."""
    rows = []
    pooled = _per_method(mia)
    for (family, base, attack), g in pooled.groupby(["family", "base", "attack"], sort=False, dropna=False):
        g = g.dropna(subset=["auc"])
        scope = f"{family}/{base}/{attack}"
        listing = ", ".join(f"{m} {fmt(a)}" for m, a in zip(g["method"], g["auc"]))
        if len(g) < 2 or g["auc"].nunique() < 2:
            detail = f"{len(g)} KD methods with an AUC ({listing}): no ranking, not testable"
            rows.append(
                make_row(
                    "top_leakers_imitkd_seqkd_kd",
                    "cell",
                    scope,
                    "auc(top method)",
                    math.nan,
                    n=len(g),
                    supported=None,
                    detail=detail,
                )
            )
            rows.append(
                make_row(
                    "minillm_leaks_least",
                    "cell",
                    scope,
                    "auc(minillm) - min auc(others)",
                    math.nan,
                    n=len(g),
                    supported=None,
                    detail=detail,
                )
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
                make_row(
                    "minillm_leaks_least",
                    "cell",
                    scope,
                    "auc(minillm) - min auc(others)",
                    math.nan,
                    n=len(g),
                    supported=None,
                    detail=f"no MiniLLM student ({listing}): not testable",
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
    students = _students(mia)
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
    rows = []
    known = student_sizes(mia, sizes)
    students = _students(mia)
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
            rows.append(
                make_row(
                    "larger_students_leak_more",
                    "cell",
                    f"{family}",
                    "auc(largest) - auc(smallest)",
                    math.nan,
                    n=len(distinct),
                    supported=None,
                    detail=why,
                )
            )
            continue
        for (method, attack), g in fam.groupby(["method", "attack"], sort=False):
            g = g[g["base"].isin(sized)].dropna(subset=["auc"])
            g = g.assign(size=[known[(family, b)][0] for b in g["base"]])
            scope = f"{family}/{method}/{attack}"
            if g["size"].nunique() < 2:
                rows.append(
                    make_row(
                        "larger_students_leak_more",
                        "cell",
                        scope,
                        "auc(largest) - auc(smallest)",
                        math.nan,
                        n=len(g),
                        supported=None,
                        detail=f"{method} trained on fewer than two sized bases: not testable",
                    )
                )
                continue
            g = g.sort_values("size", kind="stable")
            small, large = g.iloc[0], g.iloc[-1]
            diff = float(large["auc"] - small["auc"])
            lo, hi = approx_diff_ci(
                large["auc"],
                large["ci_low"],
                large["ci_high"],
                small["auc"],
                small["ci_low"],
                small["ci_high"],
            )
            ok, why = _greater(lo, hi)
            rho = spearman(g["size"], g["auc"])
            rows.append(
                make_row(
                    "larger_students_leak_more",
                    "cell",
                    scope,
                    "auc(largest) - auc(smallest)",
                    diff,
                    lo,
                    hi,
                    len(g),
                    ok,
                    f"{method}/{attack}: "
                    + ", ".join(
                        f"{b} ({s:.3g} params, {known[(family, b)][1]}) {fmt(a)}"
                        for b, s, a in zip(g["base"], g["size"], g["auc"])
                    )
                    + f"; largest - smallest {diff:+.3f} {fmt_ci(lo, hi)} (approximate, unpaired); "
                    f"Spearman(size, AUC) {fmt(rho, 2)}; {why}",
                )
            )
    return rows


def source_rows(mia: pd.DataFrame, family: str, student: str | None) -> pd.DataFrame:
    if not student:
        return mia.iloc[0:0]
    main = main_rows(mia)
    return main[(main["family"] == family) & (main["model"] == student)]


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
            rows.append(
                make_row(
                    "reverse_kl_leaks_less",
                    "cell",
                    family,
                    "auc(reverse) - auc(fkl)",
                    math.nan,
                    supported=None,
                    detail=f"objectives present {have}"
                    + (
                        ""
                        if not reference.empty
                        else ", no forward-KL reference (add fkl to the ablation or name the source's "
                        "objective)"
                    )
                    + ("" if not reverse.empty else ", no rkl/srkl copy")
                    + ": not testable",
                )
            )
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
            ok, why = _less(lo, hi)
            rows.append(
                make_row(
                    "reverse_kl_leaks_less",
                    "cell",
                    scope,
                    "auc(reverse) - auc(fkl)",
                    float(diff),
                    lo,
                    hi,
                    int(r.n_seeds),
                    ok,
                    f"{r.objective} ({r.model}) {fmt(r.auc)} vs fkl ({ref_note}) {fmt(f['auc'])}: "
                    f"{diff:+.3f} "
                    f"{fmt_ci(lo, hi)} ({how}; {seeds_note(int(r.n_seeds))}); {why}",
                )
            )
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
    p = pool(hit, ["attack"], "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high").iloc[0]
    return float(p["auc_diff"]), float(p["ci_low"]), float(p["ci_high"])


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
            pa = pool(
                a[a["comparator"] == comparator],
                ["attack"],
                "auc_diff",
                "auc_diff_ci_low",
                "auc_diff_ci_high",
            ).iloc[0]
            pb = pool(
                b[b["comparator"] == comparator],
                ["attack"],
                "auc_diff",
                "auc_diff_ci_low",
                "auc_diff_ci_high",
            ).iloc[0]
            lo, hi = approx_diff_ci(
                pa["auc_diff"], pa["ci_low"], pa["ci_high"], pb["auc_diff"], pb["ci_low"], pb["ci_high"]
            )
            return float(pa["auc_diff"] - pb["auc_diff"]), lo, hi, comparator
    return None


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


def slope_with_ci(x, y, lo, hi, n_draws: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """OLS slope of ``y`` on ``x`` and a parametric-bootstrap 95% interval (each y ~ N(y, se from its CI))."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope = float(np.polyfit(x, y, 1)[0])
    se = (np.asarray(hi, float) - np.asarray(lo, float)) / (2 * Z95)
    if np.isnan(se).any():
        return slope, math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = y + rng.standard_normal((n_draws, len(y))) * se
    xc = x - x.mean()
    slopes = (draws - draws.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    return slope, float(np.quantile(slopes, 0.025)), float(np.quantile(slopes, 0.975))


def more_sgo(mia: pd.DataFrame, sources: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict]:
    """``more_sgo_leaks_more``: per (family, attack), slope of AUC over the SGO ratio."""
    rows = []
    points = sgo_points(mia, sources)
    for (family, attack), g in points.groupby(["family", "attack"], sort=False):
        g = g.dropna(subset=["auc"])
        scope = f"{family}/{attack}"
        if g["ratio"].nunique() < 2:
            rows.append(
                make_row(
                    "more_sgo_leaks_more",
                    "cell",
                    scope,
                    "slope of auc over sgo ratio",
                    math.nan,
                    n=len(g),
                    supported=None,
                    detail="fewer than two SGO ratios: not testable",
                )
            )
            continue
        slope, lo, hi = slope_with_ci(g["ratio"], g["auc"], g["ci_low"], g["ci_high"])
        ok, why = _greater(lo, hi)
        rho = spearman(g["ratio"], g["auc"])
        rows.append(
            make_row(
                "more_sgo_leaks_more",
                "cell",
                scope,
                "slope of auc over sgo ratio",
                slope,
                lo,
                hi,
                len(g),
                ok,
                "AUC by ratio: "
                + ", ".join(f"{x:g}: {fmt(a)}" for x, a in zip(g["ratio"], g["auc"]))
                + f"; OLS slope {slope:+.3f} per unit ratio {fmt_ci(lo, hi)} (parametric bootstrap over the "
                f"per-point CIs); Spearman {fmt(rho, 2)}; {why}",
            )
        )
    if points.empty:
        for family in dict.fromkeys(mia["family"]) if "family" in mia.columns else []:
            rows.append(
                make_row(
                    "more_sgo_leaks_more",
                    "cell",
                    f"{family}",
                    "slope of auc over sgo ratio",
                    math.nan,
                    n=0,
                    supported=None,
                    detail="no SGO-ratio ablation rows: not testable",
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
        ok, why = _greater(lo, hi)
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
    pooled = _per_method(mia)
    for family, g in pooled.groupby("family", sort=False):
        means = g.groupby("attack", sort=False)["auc"].mean().dropna()
        if means.empty:
            continue
        refs = [a for a in means.index if a in REFERENCE_ATTACKS]
        listing = ", ".join(f"{a} {fmt(v)}" for a, v in means.sort_values(ascending=False).items())
        if not refs:
            rows.append(
                make_row(
                    "reference_attacks_strongest",
                    "cell",
                    family,
                    "max mean auc(reference) - max mean " "auc(other)",
                    math.nan,
                    n=len(means),
                    supported=None,
                    detail=f"no reference attack run ({listing}): not testable",
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
    """``nokd_near_chance`` per (family, nokd model, attack); ``blind_baseline_near_chance`` per blind row."""
    rows = []
    students = _students(mia)
    nokd = students[students["method"] == "nokd"]
    if not nokd.empty:
        for r in pool(nokd, ["family", "model", "attack"]).itertuples(index=False):
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
        ok, why = _greater(r.ci_low, r.ci_high)
        rows.append(
            make_row(
                "memorization_gap_positive",
                "cell",
                f"{r.family}/{r.model}",
                "member_rate - nonmember_rate",
                r.gap,
                r.ci_low,
                r.ci_high,
                r.n_seeds,
                ok,
                f"{r.model} gap {r.gap:+.4f} {fmt_ci(r.ci_low, r.ci_high)} ({seeds_note(r.n_seeds)}); "
                f"{why}",
            )
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
                make_row(
                    "distillm_memorizes_most",
                    "cell",
                    scope,
                    "rate(distillm) - max rate(others)",
                    math.nan,
                    n=len(g),
                    supported=None,
                    detail=f"member match rates {listing or 'none'}: "
                    + ("no DistiLLM student" if dist.empty else "all equal")
                    + ", not testable",
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
        auc = _per_method(mia)
        auc = auc[(auc["family"] == family) & (auc["base"].astype(object) == base)]
        for attack in ordered(auc["attack"], attacks):
            a = auc[auc["attack"] == attack][["model", "auc"]].dropna()
            both = g.merge(a, on="model")
            scope_a = f"{family}/{base}/{attack}"
            rho = spearman(both["auc"], both["member_rate"]) if len(both) >= 2 else math.nan
            if len(both) < 4 or math.isnan(rho):
                rows.append(
                    make_row(
                        "membership_memorization_disagree",
                        "cell",
                        scope_a,
                        "spearman(auc, member match rate) over KD methods",
                        rho,
                        n=len(both),
                        supported=None,
                        detail=f"{len(both)} KD methods with both numbers"
                        + (" (a side is constant)" if len(both) >= 4 else " (need >= 4)")
                        + ": not testable",
                    )
                )
                continue
            p = spearman_p_greater(both["auc"], both["member_rate"])
            ok = bool(p >= 0.05)
            by_auc = " > ".join(both.sort_values("auc", ascending=False)["method"])
            by_mem = " > ".join(both.sort_values("member_rate", ascending=False)["method"])
            rows.append(
                make_row(
                    "membership_memorization_disagree",
                    "cell",
                    scope_a,
                    "spearman(auc, member match rate) over KD methods",
                    rho,
                    n=len(both),
                    supported=ok,
                    detail=f"by AUC: {by_auc}; by memorization: {by_mem}; Spearman {rho:+.2f}, one-sided "
                    f"permutation p {p:.3f}: "
                    + (
                        "agreement not significant, the two disagree"
                        if ok
                        else "significant agreement, they do not disagree"
                    ),
                )
            )
    return rows


def category_order(category: pd.DataFrame | None, attacks: Sequence[str] | None = None) -> list[dict]:
    """``category_risk_order`` per (family, attack): mean student AUC, risky minus safe categories."""
    rows = []
    if category is None or category.empty:
        return rows
    students = _students(category)
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
                make_row(
                    "category_risk_order",
                    "cell",
                    scope,
                    "mean auc(risky) - mean auc(safe)",
                    math.nan,
                    n=len(means),
                    supported=None,
                    detail=f"categories present {sorted(means.index)}: a group is missing, not testable",
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


def block_variation(blocks: pd.DataFrame | None) -> list[dict]:
    """``block_risk_varies`` per (family, model, sigma): highest minus lowest block AUC."""
    rows = []
    if blocks is None or blocks.empty:
        return rows
    main = main_rows(blocks)
    keys = ["family", "model", "sigma", "block"] if "sigma" in main.columns else ["family", "model", "block"]
    pooled = pool(main, keys)
    for key, g in pooled.groupby(keys[:-1], sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.dropna(subset=["auc"])
        scope = "/".join(str(k) for k in key[:2]) + (f"/sigma={key[2]:g}" if len(key) > 2 else "")
        if len(g) < 2:
            rows.append(
                make_row(
                    "block_risk_varies",
                    "cell",
                    scope,
                    "auc(highest block) - auc(lowest block)",
                    math.nan,
                    n=len(g),
                    supported=None,
                    detail="fewer than two blocks: not testable",
                )
            )
            continue
        hi_b, lo_b = g.loc[g["auc"].idxmax()], g.loc[g["auc"].idxmin()]
        value = float(hi_b["auc"] - lo_b["auc"])
        if any(math.isnan(x) for x in (hi_b["ci_low"], lo_b["ci_high"])):
            ok, why = None, "no interval, not testable"
        else:
            ok = bool(hi_b["ci_low"] > lo_b["ci_high"])
            why = "the intervals do not overlap: supported" if ok else "the intervals overlap: not supported"
        rows.append(
            make_row(
                "block_risk_varies",
                "cell",
                scope,
                "auc(highest block) - auc(lowest block)",
                value,
                n=len(g),
                supported=ok,
                detail=f"block {int(hi_b['block'])} {fmt(hi_b['auc'])} "
                f"{fmt_ci(hi_b['ci_low'], hi_b['ci_high'])} vs block {int(lo_b['block'])} "
                f"{fmt(lo_b['auc'])} {fmt_ci(lo_b['ci_low'], lo_b['ci_high'])}; {why}",
            )
        )
    return rows


def compute_findings(
    mia: pd.DataFrame,
    paired: pd.DataFrame | None = None,
    memorization: pd.DataFrame | None = None,
    blind: pd.DataFrame | None = None,
    category: pd.DataFrame | None = None,
    blocks: pd.DataFrame | None = None,
    sizes: Mapping[str, Mapping[str, float]] | None = None,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    attacks: Sequence[str] | None = None,
) -> pd.DataFrame:
    """All claims of :data:`CLAIMS` on this run's tables (module docstring), cells then a summary row per
    (claim, family).

    ``mia`` = ``mia.csv``; ``paired`` = ``mia_paired.csv``; ``memorization`` = ``memorization.csv``;
    ``blind`` = ``blind_baseline.csv``; ``category`` = ``mia_category.csv``; ``blocks`` = ``blocks.csv``.
    ``sizes``: ``{family: {base: n_params}}`` (bases missing here are sized from their names when possible).
    ``sources``: ``{family: {"objective": {"student": name, "objective": "fkl"}, "sgo_ratio": {"student":
    name, "value": ratio}}}``: the source students of the ablations and their own setting, so that they join
    the comparison. ``attacks``: preferred attack order.
    """
    require(mia, ["family", "model", "role", "method", "attack", "auc"], "mia")
    rows: list[dict] = []
    rows += kd_vs_nokd(paired)
    rows += method_extremes(mia)
    rows += larger_students(mia, sizes)
    rows += reverse_kl(mia, paired, sources)
    rows += more_sgo(mia, sources)
    rows += teacher_vs_students(paired)
    rows += reference_strongest(mia)
    rows += near_chance(mia, blind)
    rows += memorization_claims(memorization, mia, attacks)
    rows += category_order(category, attacks)
    rows += block_variation(blocks)
    families = list(dict.fromkeys(mia["family"]))
    out: list[dict] = []
    for claim in CLAIMS:
        cells = [r for r in rows if r["claim"] == claim]
        if not cells:
            for family in families:
                out.append(
                    make_row(
                        claim,
                        "summary",
                        family,
                        "share of testable cells supported",
                        math.nan,
                        n=0,
                        supported=None,
                        detail="no table rows for this claim: not testable in this run",
                    )
                )
            continue
        out += cells
        if claim == "kd_method_ranking":
            continue
        claim_families = [f for f in families if any(r["scope"].split("/")[0] == f for r in cells)]
        for family in claim_families:
            out.append(summarize(cells, claim, family))
        if claim == "blind_baseline_near_chance":
            out.append(summarize([{**r, "scope": "blind"} for r in cells], claim, "blind"))
    table = pd.DataFrame(out, columns=COLUMNS)
    table["supported"] = table["supported"].astype(object).where(table["supported"].notna(), None)
    return table


# ------------------------------------------------------------------------------------------ summary page
def _link(path: str, start: str) -> str:
    return os.path.relpath(path, start=start).replace(os.sep, "/")


def _md_cell(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    columns = list(columns or frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, r in frame[columns].iterrows():
        lines.append("| " + " | ".join(_md_cell(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def _verdict(x: Any) -> str:
    b = as_bool(x)
    return "not testable" if b is None else ("supported" if b else "not supported")


def render_summary(
    summary_path: str | os.PathLike,
    findings: pd.DataFrame,
    tables: Mapping[str, str],
    figures: Mapping[str, str],
    config_name: str,
    config_hash: str,
    claims: pd.DataFrame | None = None,
    comparison: pd.DataFrame | None = None,
    mia: pd.DataFrame | None = None,
    provenance: Sequence[str] = (),
    title: str = "kdprivacy results",
) -> str:
    """The one-page Markdown summary (built only from the tables given).

    ``tables`` / ``figures``: name -> path (linked relative to ``summary_path``'s folder). ``findings``:
    :func:`compute_findings`; ``claims`` / ``comparison``: :mod:`kdprivacy.paper` tables (optional);
    ``mia``: ``mia.csv`` for the headline AUC ranges. ``provenance``: paths to point at.
    """
    start = os.path.dirname(os.path.abspath(summary_path))
    out = [
        f"# {title}",
        "",
        f"Config **{config_name}** (hash `{config_hash}`). Every number below is read from the tables linked "
        "here; nothing is typed in by hand.",
        "",
    ]
    if mia is not None and not mia.empty:
        out += ["## Headline numbers", ""]
        pooled = pool(
            mia.assign(base=col(mia, "base"), ablation=col(mia, "ablation")),
            ["family", "role", "method", "model", "ablation", "attack"],
        )
        main = pooled[pooled["ablation"].isna()]
        for family, g in main.groupby("family", sort=False):
            bits = []
            for label, part in (
                ("teacher", g[g["role"] == "teacher"]),
                ("No-KD students", g[g["method"] == "nokd"]),
                ("KD students", g[g["method"].isin(KD_METHODS)]),
            ):
                part = part.dropna(subset=["auc"])
                if not part.empty:
                    best = part.loc[part["auc"].idxmax()]
                    bits.append(
                        f"{label} AUC {part['auc'].min():.3f}-{part['auc'].max():.3f} (highest: "
                        f"{best['model']} on {best['attack']})"
                    )
            n_seeds = int(main["n_seeds"].max()) if len(main) else 0
            out.append(
                f"- **{family}** ({n_seeds} seed{'s' if n_seeds != 1 else ''}): " + "; ".join(bits) + "."
            )
        out.append("")
    summary_rows = findings[findings["level"] == "summary"]
    if not summary_rows.empty:
        out += [
            "## Findings",
            "",
            "One line per claim and family: whether this run supports it (95% intervals; "
            "rules in `kdprivacy/findings.py`). Cell-level numbers: "
            + (
                f"[findings]({_link(tables['findings'], start)})."
                if "findings" in tables
                else "the findings table."
            ),
            "",
        ]
        lines = []
        for r in summary_rows.itertuples(index=False):
            lines.append(
                {
                    "claim": r.claim,
                    "scope": r.scope,
                    "verdict": _verdict(r.supported),
                    "what": CLAIMS.get(r.claim, ""),
                    "evidence": r.detail,
                }
            )
        out += [markdown_table(pd.DataFrame(lines)), ""]
        ranking = findings[findings["claim"] == "kd_method_ranking"]
        if not ranking.empty:
            out += ["### KD methods ranked by AUC (paired difference vs No-KD)", ""]
            out += [f"- `{r.scope}`: {r.detail}" for r in ranking.itertuples(index=False)][:12]
            if len(ranking) > 12:
                out.append(f"- ... {len(ranking) - 12} more in the findings table")
            out.append("")
    if claims is not None and not claims.empty:
        out += ["## The paper's claims in this run", ""]
        show = claims.assign(verdict=[_verdict(x) for x in claims["supported"]])
        cols = [c for c in ("claim", "paper_claim", "verdict", "detail") if c in show.columns]
        out += [markdown_table(show, cols), ""]
    if comparison is not None:
        out += ["## Beside the paper", ""]
        if comparison.empty:
            out += [
                "No model of this run is mapped onto a cell of the paper (`paper.families` in the config), "
                "so there is no side-by-side table.",
                "",
            ]
        else:
            diffs = comparison.dropna(subset=["diff"])
            for metric, g in diffs.groupby("metric", sort=False):
                inside = [as_bool(x) for x in g["paper_in_ci"]] if "paper_in_ci" in g.columns else []
                known = [x for x in inside if x is not None]
                out.append(
                    f"- `{metric}`: {len(g)} matched cells, ours - paper mean {g['diff'].mean():+.3f} "
                    f"(range {g['diff'].min():+.3f} to {g['diff'].max():+.3f})"
                    + (
                        f"; the paper's value lies in our 95% CI in {sum(known)} of {len(known)}"
                        if known
                        else ""
                    )
                    + "."
                )
            out.append("")
    if figures:
        out += ["## Figures", ""]
        out += [f"- [{name}]({_link(path, start)})" for name, path in figures.items()]
        out.append("")
    if tables:
        out += ["## Tables", ""]
        out += [f"- [{name}]({_link(path, start)})" for name, path in tables.items()]
        out.append("")
    out += [
        "## Provenance",
        "",
        "Each model directory (`<family>/seed<k>/models/<model>/provenance.json`) records the config subset, "
        "seed, input hashes, package and code versions it came from.",
    ]
    out += [f"- [{os.path.basename(p)}]({_link(p, start)})" for p in provenance]
    out.append("")
    return "\n".join(out)
