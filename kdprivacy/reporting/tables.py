"""Building the tidy tables under ``results/tables/`` from the per-model results, each row led by its model's
key columns (``family, seed, model, role, method, base, ablation, ablation_value``: whatever the rules' model
list holds, in that order).

:func:`aggregate`: MIA metrics per (model, attack), per category, paired differences between a student and its
comparators (teacher, No-KD student) on the same examples, pooled over training seeds; memorization per model.
:func:`collect`: any other per-model table stacked as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from kdprivacy.memorization import extraction
from kdprivacy.mia import metrics
from kdprivacy.reporting import best_attack
from kdprivacy.reporting.tidy import with_model_keys
from kdprivacy.stats import Bootstrap

log = logging.getLogger("kdprivacy.reporting.tables")

AGGREGATED = (
    "mia",
    "mia_pooled",
    "mia_category",
    "mia_paired",
    "mia_paired_pooled",
    "mia_split",
    "mia_best_attack",
    "memorization",
)
"""The tables :func:`aggregate` can build (``mia`` and ``memorization`` always)."""


def model_columns(models: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(models[0]) if models else ["family", "seed", "model", "role", "method", "base"]


def collect(paths: Sequence[str], models: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One csv per model (aligned index by index with ``models``) stacked; a column of the csv that is also a
    key column is replaced by the key."""
    if len(paths) != len(models):
        raise ValueError(f"{len(paths)} tables for {len(models)} models: they must align index by index")
    frames = []
    for spec, path in zip(models, paths):
        frame = pd.read_csv(path)
        frame = frame.drop(columns=[c for c in spec if c in frame.columns])
        frames.append(with_model_keys(frame, spec))
    return pd.concat(frames, ignore_index=True)


def aggregate(
    models: Sequence[Mapping[str, Any]],
    inputs: Mapping[str, Any],
    outputs: Iterable[str],
    bootstrap: Bootstrap,
    split_seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """The tables of :data:`AGGREGATED` named in ``outputs``, from the per-model files of ``inputs``
    (name -> paths aligned index by index with ``models``): ``metrics`` and ``memorization`` always,
    ``per_category`` for ``mia_category``, ``per_example`` for the paired tables and the held-out best
    attack. Paired differences: ``bootstrap.n`` joint resamples seeded with ``bootstrap.seed``.
    ``mia_split`` / ``mia_best_attack``: :mod:`kdprivacy.reporting.best_attack` with the halves of
    ``split_seed`` (report-half CIs: the same ``bootstrap`` settings)."""
    models = list(models)
    outputs = set(outputs)
    columns = model_columns(models)
    pool_keys = [c for c in columns if c != "seed"]

    def paths(name: str) -> list[str] | None:
        if name not in inputs:
            return None
        value = inputs[name]
        value = [value] if isinstance(value, str) else list(value)
        if len(value) != len(models):
            raise ValueError(f"{name} ({len(value)}) and models ({len(models)}) must align index by index")
        return value

    def stacked(name: str) -> pd.DataFrame:
        return pd.concat(
            [with_model_keys(pd.read_csv(p), m, columns) for m, p in zip(models, paths(name))],
            ignore_index=True,
        )

    mia = stacked("metrics")
    memorization_table = pd.DataFrame(
        [
            {**{c: m[c] for c in columns}, **extraction.summarize_memorization(pd.read_parquet(p))}
            for m, p in zip(models, paths("memorization"))
        ]
    )
    log.info("MIA table: %d rows; memorization table: %d rows", len(mia), len(memorization_table))
    out = {"mia": mia, "memorization": memorization_table}
    value_columns = [
        c
        for c in mia.columns
        if c == "auc" or (c.startswith("tpr_at_fpr_") and not c.endswith(("_ci_low", "_ci_high")))
    ]
    if "mia_pooled" in outputs:
        out["mia_pooled"] = metrics.pool_seeds(
            mia, [*pool_keys, "attack"], value_columns, include_seeds=False
        )
    if "mia_category" in outputs:
        if paths("per_category") is None:
            raise ValueError("output mia_category needs the per_category inputs")
        out["mia_category"] = stacked("per_category")
    if "mia_paired" in outputs or "mia_paired_pooled" in outputs:
        example_paths = paths("per_example")
        if example_paths is None:
            raise ValueError("paired differences need the per_example inputs")
        paired = paired_table(models, example_paths, columns, bootstrap)
        if "mia_paired" in outputs:
            out["mia_paired"] = paired
        if "mia_paired_pooled" in outputs:
            keys = [*pool_keys, "comparator", "comparison", "attack"]
            values = ["auc_diff", "auc_model", "auc_comparator"]
            out["mia_paired_pooled"] = metrics.pool_seeds(paired, keys, values, include_seeds=False)
    if "mia_split" in outputs or "mia_best_attack" in outputs:
        example_paths = paths("per_example")
        if example_paths is None:
            raise ValueError("the held-out best attack needs the per_example inputs")
        split = split_table(models, example_paths, columns, split_seed, bootstrap)
        if "mia_split" in outputs:
            out["mia_split"] = split
        if "mia_best_attack" in outputs:
            out["mia_best_attack"] = best_attack.held_out_best(split, pool_keys, split_seed)
    return out


def split_table(
    models: Sequence[Mapping[str, Any]],
    example_paths: Sequence[str],
    columns: Sequence[str],
    split_seed: int,
    bootstrap: Bootstrap,
) -> pd.DataFrame:
    """One row per (model, attack): :func:`kdprivacy.reporting.best_attack.split_aucs` (AUC on the
    selection half, on the report half with its CI, on all examples), the model's key columns in front."""
    frames = []
    for model, path in zip(models, example_paths):
        per_example = pd.read_parquet(path, columns=["id", "attack", "score", "label"])
        split = best_attack.split_aucs(per_example, split_seed, bootstrap)
        frames.append(with_model_keys(split, model, columns))
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame(columns=[*columns, *best_attack.SPLIT_COLUMNS])


def paired_table(
    models: Sequence[Mapping[str, Any]],
    example_paths: Sequence[str],
    columns: Sequence[str],
    bootstrap: Bootstrap,
) -> pd.DataFrame:
    """One row per (model, comparator, attack) of :func:`kdprivacy.mia.metrics.comparison_pairs`: the paired AUC
    difference on the same examples, with the model's key columns in front."""
    index = {id(m): i for i, m in enumerate(models)}
    cache: dict[int, pd.DataFrame] = {}

    def per_example(spec: Mapping[str, Any]) -> pd.DataFrame:
        i = index[id(spec)]
        if i not in cache:
            cache[i] = pd.read_parquet(example_paths[i], columns=["id", "attack", "score", "label"])
        return cache[i]

    frames = []
    for model, comparator, kind in metrics.comparison_pairs(models):
        diff = metrics.paired_differences(per_example(model), per_example(comparator), bootstrap)
        diff = diff.rename(
            columns={
                c: c.replace("auc_a", "auc_model").replace("auc_b", "auc_comparator") for c in diff.columns
            }
        )
        diff.insert(0, "comparison", kind)
        diff.insert(0, "comparator", comparator["model"])
        frames.append(with_model_keys(diff, model, columns))
        log.info(
            "paired %s/%s seed %s vs %s: %d attacks",
            model["family"],
            model["model"],
            model["seed"],
            comparator["model"],
            len(diff),
        )
    if frames:
        return pd.concat(frames, ignore_index=True)
    return pd.DataFrame(
        columns=[
            *columns,
            "comparator",
            "comparison",
            "attack",
            "auc_model",
            "auc_comparator",
            "auc_diff",
            "auc_diff_ci_low",
            "auc_diff_ci_high",
            "auc_diff_p",
            "n_members",
            "n_nonmembers",
        ]
    )
