"""Teacher-to-student inheritance of memorization, and membership vs memorization per sample.

Inputs are per-example memorization tables of :func:`kdprivacy.memorization.extraction.memorization_table` (plus the
``label`` column the workflow adds) for a teacher and a student scored on the same evaluation set, and the
long per-example attack table (``id, attack, score``; higher = more likely member).

**Inheritance** (:func:`inheritance_table`), one row per ``(metric, threshold, group)``:

- an example is *memorized* by a model when its metric value is ``>= threshold`` (``> threshold`` with
  ``comparison=">"``, the authors' rule; continuous metrics ``match_rate``, ``rouge_l``; one row per threshold) or is True (0/1 metrics ``exact_k``, ``exact_full``,
  ``approx_memorized``, ``secret_hit``; ``threshold`` NaN);
- counts ``both, teacher_only, student_only, neither`` (teacher x student memorized);
- ``student_rate_given_teacher``: the student's mean metric value over the examples the teacher memorizes
  (the paper's variant: student match rate restricted to members the teacher reproduces above a threshold
  0.5 ... 0.9999), with a seeded bootstrap CI, beside ``teacher_rate_given_teacher`` and ``student_rate``
  (over all examples of the group);
- ``p_student_given_teacher = both / n_teacher``, ``p_student_given_not_teacher = student_only /
  (n - n_teacher)``: does a student memorize what its teacher memorized more than the rest?

Examples where either model's value is missing (NA ``exact_full``, no secret) are left out of that metric
(``n`` says how many remain); ``secret_hit`` uses only the teacher table's learnable secrets
(:func:`kdprivacy.memorization.extraction.subset_rows`: in the reference, not in the prompt).

**Membership vs memorization** (:func:`membership_memorization_correlation`): per attack and memorization
metric, Spearman's rho and Kendall's tau-b between the attack score and the memorization value over the
examples (``all``, ``member``, ``nonmember``), with ``n``. Positive = samples the attack calls members are
the ones the model reproduces; near 0 = the paper's "disagreement" between membership and memorization.
Both coefficients are computed here with NumPy (average ranks; tau-b corrects for ties); NaN when either
variable is constant or fewer than 2 examples remain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdprivacy import stats
from kdprivacy.config import Memorization
from kdprivacy.memorization import extraction

DEFAULT_THRESHOLDS = tuple(Memorization.model_fields["inheritance_thresholds"].default)  # the config's default
CONTINUOUS_METRICS = ("match_rate", "rouge_l")
BINARY_METRICS = ("exact_k", "exact_full", "approx_memorized", "secret_hit")
DEFAULT_METRICS = ("match_rate", "rouge_l", "exact_k", "exact_full", "secret_hit")
GROUPS = {"member": 1, "nonmember": 0}
SUBSETS = dict.fromkeys(("secret_hit", "exposure", "exposure_extrapolated", "secret_rank"), "secret_learnable")
_FLAGS = ("secret_in_prompt", "secret_in_reference")


def _metric_rows(frame: pd.DataFrame, metric: str, flags: str = "") -> pd.DataFrame | None:
    """The rows of ``frame`` that ``metric`` is computed on: all, or its :data:`SUBSETS` subset chosen by the
    :data:`_FLAGS` columns ``<flag><flags>``; None when those columns are missing (the metric is skipped)."""
    subset = SUBSETS.get(metric)
    if subset is None:
        return frame
    if f"secret_in_prompt{flags}" not in frame.columns:
        return None
    if flags:
        frame = frame.rename(columns={f"{flag}{flags}": flag for flag in _FLAGS})
    return extraction.subset_rows(frame, subset)

INHERITANCE_COLUMNS = [
    "metric", "threshold", "group", "n", "n_teacher", "n_student", "both", "teacher_only", "student_only",
    "neither", "p_student_given_teacher", "p_student_given_not_teacher", "teacher_rate_given_teacher",
    "student_rate_given_teacher", "student_rate_given_teacher_ci_low", "student_rate_given_teacher_ci_high",
    "student_rate",
]
CORRELATION_METRICS = ("match_rate", "rouge_l", "exposure")
CORRELATION_GROUPS = ("all", "member", "nonmember")
CORRELATION_COLUMNS = ["attack", "metric", "group", "n", "spearman", "kendall"]


def _float(series: pd.Series) -> np.ndarray:
    return series.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def align(teacher: pd.DataFrame, student: pd.DataFrame) -> pd.DataFrame:
    """Teacher and student rows side by side by id (suffixes ``_teacher``/``_student``); same ids and labels.

    The two tables must cover exactly the same examples (the shared evaluation set): anything else means
    the two models were not evaluated alike, which is an error rather than something to join around.
    """
    for name, table in (("teacher", teacher), ("student", student)):
        for column in ("id", "label"):
            if column not in table.columns:
                raise ValueError(f"{name} memorization table lacks column {column!r}")
        if table["id"].duplicated().any():
            raise ValueError(f"{name} memorization table has duplicate ids")
    if set(teacher["id"]) != set(student["id"]):
        only_t = len(set(teacher["id"]) - set(student["id"]))
        only_s = len(set(student["id"]) - set(teacher["id"]))
        raise ValueError(f"teacher and student tables cover different examples ({only_t} only in the "
                         f"teacher, {only_s} only in the student)")
    merged = teacher.merge(student, on="id", suffixes=("_teacher", "_student"), validate="one_to_one")
    if not (merged["label_teacher"] == merged["label_student"]).all():
        raise ValueError("teacher and student tables disagree on member labels")
    return merged.rename(columns={"label_teacher": "label"}).drop(columns="label_student")


COMPARISONS = (">=", ">")
DEFAULT_COMPARISON = Memorization.model_fields["inheritance_comparison"].default


def _memorized(values: np.ndarray, threshold: float | None, comparison: str = DEFAULT_COMPARISON) -> np.ndarray:
    if threshold is None:
        return values >= 0.5  # 0/1 metrics: True == 1.0
    return values > threshold if comparison == ">" else values >= threshold


def inheritance_table(
    teacher: pd.DataFrame,
    student: pd.DataFrame,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    metric_names: Sequence[str] = DEFAULT_METRICS,
    bootstrap: stats.Bootstrap = stats.Bootstrap(),
    comparison: str = DEFAULT_COMPARISON,
) -> pd.DataFrame:
    """Teacher x student memorization per metric, threshold and group (``INHERITANCE_COLUMNS``).

    ``comparison``: ``">="`` (ours) or ``">"`` (the authors') between a continuous metric and a threshold.
    Metrics absent from either table are skipped. See the module docstring for every column.
    """
    if not thresholds:
        raise ValueError("need at least one threshold")
    if comparison not in COMPARISONS:
        raise ValueError(f"comparison must be one of {COMPARISONS}, got {comparison!r}")
    unknown = [m for m in metric_names if m not in CONTINUOUS_METRICS + BINARY_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {list(CONTINUOUS_METRICS + BINARY_METRICS)}")
    merged = align(teacher, student)
    rows = []
    for metric in metric_names:
        if f"{metric}_teacher" not in merged.columns or f"{metric}_student" not in merged.columns:
            continue
        frame = _metric_rows(merged, metric, flags="_teacher")  # the teacher's flags pick the subset
        if frame is None:
            continue
        levels = list(thresholds) if metric in CONTINUOUS_METRICS else [None]
        for group, label in GROUPS.items():
            part = frame[frame["label"] == label]
            t_all, s_all = _float(part[f"{metric}_teacher"]), _float(part[f"{metric}_student"])
            keep = ~(np.isnan(t_all) | np.isnan(s_all))
            t_values, s_values = t_all[keep], s_all[keep]
            for threshold in levels:
                t_mem = _memorized(t_values, threshold, comparison)
                s_mem = _memorized(s_values, threshold, comparison)
                n, n_teacher = int(t_values.size), int(t_mem.sum())
                both = int((t_mem & s_mem).sum())
                student_only = int((~t_mem & s_mem).sum())
                selected = s_values[t_mem]
                low, high = (stats.bootstrap_mean_ci(selected, bootstrap) if selected.size
                             else (math.nan, math.nan))
                rows.append({
                    "metric": metric,
                    "threshold": math.nan if threshold is None else float(threshold),
                    "group": group,
                    "n": n,
                    "n_teacher": n_teacher,
                    "n_student": int(s_mem.sum()),
                    "both": both,
                    "teacher_only": n_teacher - both,
                    "student_only": student_only,
                    "neither": n - n_teacher - student_only,
                    "p_student_given_teacher": both / n_teacher if n_teacher else math.nan,
                    "p_student_given_not_teacher": (student_only / (n - n_teacher) if n > n_teacher
                                                    else math.nan),
                    "teacher_rate_given_teacher": float(t_values[t_mem].mean()) if n_teacher else math.nan,
                    "student_rate_given_teacher": float(selected.mean()) if selected.size else math.nan,
                    "student_rate_given_teacher_ci_low": low,
                    "student_rate_given_teacher_ci_high": high,
                    "student_rate": float(s_values.mean()) if n else math.nan,
                })
    table = pd.DataFrame(rows, columns=INHERITANCE_COLUMNS)
    counts = ["n", "n_teacher", "n_student", "both", "teacher_only", "student_only", "neither"]
    return table.astype({c: "int64" for c in counts})


# ----------------------------------------------------------------------------------------------- correlation
def spearman(x, y) -> float:
    """Spearman's rho: Pearson correlation of average ranks (NaN if either is constant or n < 2)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size != y.size:
        raise ValueError("x and y differ in length")
    if x.size < 2:
        return math.nan
    rx, ry = stats.average_ranks(x), stats.average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else math.nan


def _tied_pairs(values: np.ndarray) -> int:
    _, counts = np.unique(values, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau_b(x, y, chunk: int = 512) -> float:
    """Kendall's tau-b ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` by pairwise signs (O(n^2), chunked)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size != y.size:
        raise ValueError("x and y differ in length")
    n = x.size
    if n < 2:
        return math.nan
    total = 0.0  # sum over ordered pairs of sign(dx) * sign(dy) = 2 (C - D)
    for start in range(0, n, chunk):
        sx = np.sign(x[start : start + chunk, None] - x[None, :])
        sy = np.sign(y[start : start + chunk, None] - y[None, :])
        total += float((sx * sy).sum())
    n0 = n * (n - 1) / 2
    denom = math.sqrt((n0 - _tied_pairs(x)) * (n0 - _tied_pairs(y)))
    return total / 2 / denom if denom > 0 else math.nan


def membership_memorization_correlation(
    attack_scores: pd.DataFrame,
    per_example: pd.DataFrame,
    metric_names: Sequence[str] = CORRELATION_METRICS,
    groups: Sequence[str] = CORRELATION_GROUPS,
) -> pd.DataFrame:
    """Rank correlations of attack scores with memorization outcomes (``CORRELATION_COLUMNS``).

    ``attack_scores``: long ``id, attack, score``; ``per_example``: one model's memorization table with
    ``label``. Joined on the memorization sample, which may be a subset of the attacked examples (both come
from ``scoring.evaluation_set`` with the same seed); every memorized id must have been attacked. Rows with a NaN score or
    memorization value are left out of that cell; ``secret_*``/``exposure`` use only learnable secrets
    (subset ``secret_learnable``). Metrics absent from the table are skipped.
    """
    for column in ("id", "attack", "score"):
        if column not in attack_scores.columns:
            raise ValueError(f"attack table lacks column {column!r}")
    for column in ("id", "label"):
        if column not in per_example.columns:
            raise ValueError(f"memorization table lacks column {column!r}")
    unknown = [g for g in groups if g not in ("all", *GROUPS)]
    if unknown:
        raise ValueError(f"unknown group(s) {unknown}")
    if per_example["id"].duplicated().any():
        raise ValueError("memorization table has duplicate ids")
    missing = set(per_example["id"]) - set(attack_scores["id"])
    if missing:
        raise ValueError(f"{len(missing)} memorization example(s) were never attacked")
    rows = []
    for attack in dict.fromkeys(attack_scores["attack"]):
        scores = attack_scores.loc[attack_scores["attack"] == attack, ["id", "score"]]
        if scores["id"].duplicated().any():
            raise ValueError(f"attack {attack}: an id is scored twice")
        joined = scores.merge(per_example.drop(columns=["score"], errors="ignore"), on="id", how="inner")
        for metric in metric_names:
            if metric not in joined.columns:
                continue
            frame = _metric_rows(joined, metric)
            if frame is None:
                continue
            for group in groups:
                part = frame if group == "all" else frame[frame["label"] == GROUPS[group]]
                s, v = _float(part["score"]), _float(part[metric])
                keep = ~(np.isnan(s) | np.isnan(v))
                rows.append({"attack": attack, "metric": metric, "group": group, "n": int(keep.sum()),
                             "spearman": spearman(s[keep], v[keep]),
                             "kendall": kendall_tau_b(s[keep], v[keep])})
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    return table.astype({"n": "int64"})
