"""One row of the findings table and how a number with an interval becomes a verdict.

Shared by the claim modules (:mod:`kdprivacy.reporting.claims` and its ``claims_*`` parts): the row layout
(:data:`COLUMNS`), the "interval excludes the threshold" rule, the per-family majority summary, Spearman rank
correlation and its permutation test, and number formatting for the ``detail`` text. The normal
approximation for unpaired differences is :func:`kdprivacy.stats.approx_diff_ci`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["claim", "level", "scope", "statistic", "value", "ci_low", "ci_high", "n", "supported", "detail"]


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


def untestable(claim: str, scope: str, statistic: str, detail: str, n: float = math.nan) -> dict:
    """A ``cell`` row this run cannot test: no value, ``supported`` None, the reason in ``detail``."""
    return make_row(claim, "cell", scope, statistic, math.nan, n=n, supported=None, detail=detail)


def untestable_summary(claim: str, family: str, detail: str) -> dict:
    """A family's summary row of a claim with no testable cell."""
    return make_row(
        claim,
        "summary",
        family,
        "share of testable cells supported",
        math.nan,
        n=0,
        supported=None,
        detail=detail,
    )


def above(lo: float, hi: float, threshold: float = 0.0) -> tuple[bool | None, str]:
    """Whether an interval says 'above threshold'; None when there is no interval."""
    if math.isnan(lo) or math.isnan(hi):
        return None, "no interval, not testable"
    if lo > threshold:
        return True, f"the CI excludes {threshold:g}: supported"
    if hi < threshold:
        return False, f"the CI lies below {threshold:g}: the opposite holds"
    return False, f"the CI contains {threshold:g}: not supported at 95%"


def below(lo: float, hi: float, threshold: float = 0.0) -> tuple[bool | None, str]:
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
        return untestable_summary(
            claim, family, f"{len(cells)} cells, none testable: not testable in this run"
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
