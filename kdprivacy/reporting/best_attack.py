"""The "best attack" per model, chosen on one half of the examples and reported on the other.

Taking, per model, the maximum AUC over the configured attacks and reporting that maximum on the examples it
was chosen on is biased upward: with nine attacks that are all chance (true AUC 0.5) the maximum of nine
noisy AUCs is well above 0.5 (issue #15, defect 6). Here the selection is held out:

- :func:`selection_half`: a stratified split of a model's evaluated examples into a *selection* half and a
  *report* half. It is a function of the example ids and ``split_seed`` only: within each class (members,
  non-members) the examples are ordered by ``sha256(f"{split_seed}:{id}")`` and the first ``n // 2`` form the
  selection half, so every model and attack scored on the same examples gets the same halves.
- :func:`split_aucs`: per attack, the AUC on the selection half, the AUC (with a stratified bootstrap CI)
  on the report half, and the AUC on all examples (what ``mia.csv`` holds).
- :func:`held_out_best`: per model (pooled over training seeds, as the figures pool), the attack with the
  highest mean selection-half AUC, and that attack's report-half AUC: an estimate that did not pick itself.
  ``auc_same_data_max`` / ``same_data_attack`` keep the old, biased number beside it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdprivacy.mia import metrics
from kdprivacy.stats import NO_BOOTSTRAP, Bootstrap
from kdprivacy.reporting.tidy import pool

SPLIT_COLUMNS = [
    "attack",
    "auc_all",
    "auc_selection",
    "auc_report",
    "auc_report_ci_low",
    "auc_report_ci_high",
    "n_members_selection",
    "n_nonmembers_selection",
    "n_members_report",
    "n_nonmembers_report",
]
"""The columns of :func:`split_aucs` (after the model's key columns in ``mia_split.csv``)."""

BEST_COLUMNS = [
    "best_attack",
    "auc_selection",
    "auc",
    "ci_low",
    "ci_high",
    "n_seeds",
    "n_attacks",
    "auc_same_data_max",
    "same_data_attack",
    "split_seed",
]
"""The columns of :func:`held_out_best` (after the pooled key columns in ``mia_best_attack.csv``)."""


def _key(split_seed: int, example_id) -> str:
    return hashlib.sha256(f"{split_seed}:{example_id}".encode()).hexdigest()


def selection_half(ids: Sequence, labels: Sequence[int], split_seed: int) -> np.ndarray:
    """Boolean mask, True for the selection half: per class, the ``n // 2`` examples whose
    ``sha256(f"{split_seed}:{id}")`` sorts first (module docstring). Ids must be unique."""
    ids = np.asarray(ids, dtype=object)
    y = np.asarray(labels)
    if len(set(ids.tolist())) != ids.size:
        raise ValueError("example ids repeat: the split is a function of the ids")
    if ids.shape != y.shape:
        raise ValueError(f"ids ({ids.size}) and labels ({y.size}) differ in length")
    mask = np.zeros(ids.size, dtype=bool)
    for cls in (0, 1):
        where = np.flatnonzero(y == cls)
        order = sorted(where.tolist(), key=lambda i: _key(split_seed, ids[i]))
        mask[order[: len(order) // 2]] = True
    return mask


def split_aucs(
    per_example: pd.DataFrame, split_seed: int, bootstrap: Bootstrap = NO_BOOTSTRAP
) -> pd.DataFrame:
    """One row per attack of a per-example table ``id, attack, score, label`` (first-appearance order):
    :data:`SPLIT_COLUMNS`. The report-half CI is the stratified percentile bootstrap of
    :func:`kdprivacy.mia.metrics.bootstrap_auc_ci` with ``bootstrap`` (NaN when ``bootstrap.n == 0``, the
    default, or a half lacks a class)."""
    for column in ("id", "attack", "score", "label"):
        if column not in per_example.columns:
            raise ValueError(f"per-example table lacks column {column!r}")
    rows = []
    for attack in dict.fromkeys(per_example["attack"]):
        part = per_example[per_example["attack"] == attack]
        ids, y, s = part["id"].to_numpy(), part["label"].to_numpy(), part["score"].to_numpy(float)
        sel = selection_half(ids, y, split_seed)
        row = {"attack": attack}
        row["auc_all"] = _auc(s, y)
        row["auc_selection"] = _auc(s[sel], y[sel])
        row["auc_report"] = _auc(s[~sel], y[~sel])
        low = high = math.nan
        if bootstrap.n > 0 and not math.isnan(row["auc_report"]):
            low, high = metrics.bootstrap_auc_ci(s[~sel], y[~sel], bootstrap)
        row["auc_report_ci_low"], row["auc_report_ci_high"] = low, high
        row["n_members_selection"] = int((y[sel] == 1).sum())
        row["n_nonmembers_selection"] = int((y[sel] == 0).sum())
        row["n_members_report"] = int((y[~sel] == 1).sum())
        row["n_nonmembers_report"] = int((y[~sel] == 0).sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)


def _auc(s: np.ndarray, y: np.ndarray) -> float:
    """AUC, or NaN where it is undefined (a class missing, a NaN score)."""
    if y.size == 0 or (y == 1).all() or (y == 0).all() or np.isnan(s).any():
        return math.nan
    return metrics.roc_auc(s, y)


def held_out_best(split: pd.DataFrame, keys: Sequence[str], split_seed: int) -> pd.DataFrame:
    """Per group of ``keys`` (a model, pooled over the seeds of the ``seed`` column): the attack with the
    highest seed-mean selection-half AUC (ties: the first in table order) and its seed-mean report-half AUC
    with the interval rule of :func:`kdprivacy.reporting.tidy.pool` (one seed: its bootstrap CI; several:
    the lowest low and highest high). Only attacks with an AUC in every seed of the group compete
    (``n_attacks`` counts them). ``auc_same_data_max`` / ``same_data_attack``: the maximum seed-mean AUC
    on all examples and its attack -- chosen and reported on the same examples, biased upward."""
    keys = list(keys)
    columns = [*keys, *BEST_COLUMNS]
    if split.empty:
        return pd.DataFrame(columns=columns)
    by = [*keys, "attack"]
    selection = pool(split, by, "auc_selection", None, None)
    report = pool(split, by, "auc_report", "auc_report_ci_low", "auc_report_ci_high")
    same = pool(split, by, "auc_all", None, None)
    n_seeds = split.groupby(keys, sort=False, dropna=False)["seed"].nunique().rename("_group_seeds")
    table = selection.rename(columns={"n_seeds": "_n"})[[*by, "auc_selection", "_n"]]
    table = table.merge(report[[*by, "auc_report", "ci_low", "ci_high"]], on=by, how="left")
    table = table.merge(same[[*by, "auc_all"]], on=by, how="left")
    table = table.merge(n_seeds.reset_index(), on=keys, how="left")
    eligible = (table["_n"] == table["_group_seeds"]) & table["auc_selection"].notna()
    rows = []
    for key, group in table.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = group[eligible.loc[group.index]]
        row = dict(zip(keys, key))
        row["n_seeds"] = int(group["_group_seeds"].iloc[0])
        row["n_attacks"] = len(ok)
        row["split_seed"] = int(split_seed)
        if ok.empty:
            row.update(best_attack=None, auc_selection=math.nan, auc=math.nan, ci_low=math.nan,
                       ci_high=math.nan, auc_same_data_max=math.nan, same_data_attack=None)
        else:
            best = ok.loc[ok["auc_selection"].idxmax()]
            row.update(best_attack=best["attack"], auc_selection=float(best["auc_selection"]),
                       auc=float(best["auc_report"]), ci_low=float(best["ci_low"]),
                       ci_high=float(best["ci_high"]))
            full = ok.dropna(subset=["auc_all"])
            top = full.loc[full["auc_all"].idxmax()] if len(full) else None
            row["auc_same_data_max"] = math.nan if top is None else float(top["auc_all"])
            row["same_data_attack"] = None if top is None else top["attack"]
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
