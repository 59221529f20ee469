"""Tidy cross-model tables: MIA metrics per (model, attack), per category, paired differences between a
student and its comparators (teacher, No-KD student) on the same examples, pooled over training seeds;
memorization per model.

Named inputs (lists aligned index by index with ``params.models``): ``metrics``, ``memorization``; optional
``per_category``, ``per_example``. Outputs: ``mia``, ``memorization``; optional ``mia_pooled``,
``mia_category`` (needs ``per_category``), ``mia_paired`` and ``mia_paired_pooled`` (need ``per_example``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402
from kdprivacy.memorization import extraction  # noqa: E402
from kdprivacy.mia import metrics  # noqa: E402

models = list(snakemake.params.models)  # noqa: F821
# The key columns are whatever describes a model in params.models (family, seed, model, role, method, base,
# ablation axis and value, ...), in that order.
MODEL_COLUMNS = list(models[0]) if models else ["family", "seed", "model", "role", "method", "base"]
POOL_KEYS = [c for c in MODEL_COLUMNS if c != "seed"]
cfg = dict(getattr(snakemake.params, "cfg", None) or {})  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821
out = dict(snakemake.output.items())  # noqa: F821


def paths(name: str) -> list[str] | None:
    if name not in inp:
        return None
    value = inp[name]
    value = [value] if isinstance(value, str) else list(value)
    if len(value) != len(models):
        raise ValueError(f"{name} ({len(value)}) and models ({len(models)}) must align index by index")
    return value


def with_key(frame: pd.DataFrame, spec: dict) -> pd.DataFrame:
    for column in reversed(MODEL_COLUMNS):
        frame.insert(0, column, spec[column])
    return frame


metric_paths, memorization_paths = paths("metrics"), paths("memorization")
mia = pd.concat([with_key(pd.read_csv(p), m) for m, p in zip(models, metric_paths)], ignore_index=True)
memorization_table = pd.DataFrame(
    [{**{c: m[c] for c in MODEL_COLUMNS}, **extraction.summarize_memorization(pd.read_parquet(p))}
     for m, p in zip(models, memorization_paths)]
)
log.info("MIA table: %d rows; memorization table: %d rows", len(mia), len(memorization_table))
io.write_csv(mia, out["mia"])
io.write_csv(memorization_table, out["memorization"])

value_columns = [
    c for c in mia.columns
    if c == "auc" or (c.startswith("tpr_at_fpr_") and not c.endswith(("_ci_low", "_ci_high")))
]
if "mia_pooled" in out:
    pooled = metrics.pool_seeds(mia, [*POOL_KEYS, "attack"], value_columns, include_seeds=False)
    io.write_csv(pooled, out["mia_pooled"])

if "mia_category" in out:
    category_paths = paths("per_category")
    if category_paths is None:
        raise ValueError("output mia_category needs the per_category inputs")
    by_category = pd.concat(
        [with_key(pd.read_csv(p), m) for m, p in zip(models, category_paths)], ignore_index=True
    )
    io.write_csv(by_category, out["mia_category"])

if "mia_paired" in out or "mia_paired_pooled" in out:
    example_paths = paths("per_example")
    if example_paths is None:
        raise ValueError("paired differences need the per_example inputs")
    index = {id(m): i for i, m in enumerate(models)}
    cache: dict[int, pd.DataFrame] = {}

    def per_example(spec: dict) -> pd.DataFrame:
        i = index[id(spec)]
        if i not in cache:
            cache[i] = pd.read_parquet(example_paths[i], columns=["id", "attack", "score", "label"])
        return cache[i]

    n_boot = int(cfg.get("n_bootstrap", 1000))
    seed = int(cfg.get("bootstrap_seed", 0))
    level = float(cfg.get("ci_level", 0.95))
    frames = []
    for model, comparator, kind in metrics.comparison_pairs(models):
        diff = metrics.paired_differences(per_example(model), per_example(comparator), n_boot, seed, level)
        diff = diff.rename(columns={c: c.replace("auc_a", "auc_model").replace("auc_b", "auc_comparator")
                                    for c in diff.columns})
        diff.insert(0, "comparison", kind)
        diff.insert(0, "comparator", comparator["model"])
        frames.append(with_key(diff, model))
        log.info("paired %s/%s seed %s vs %s: %d attacks", model["family"], model["model"], model["seed"],
                 comparator["model"], len(diff))
    paired = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=[*MODEL_COLUMNS, "comparator", "comparison", "attack", "auc_model", "auc_comparator",
                 "auc_diff", "auc_diff_ci_low", "auc_diff_ci_high", "auc_diff_p", "n_members",
                 "n_nonmembers"])
    if "mia_paired" in out:
        io.write_csv(paired, out["mia_paired"])
    if "mia_paired_pooled" in out:
        keys = [*POOL_KEYS, "comparator", "comparison", "attack"]
        values = ["auc_diff", "auc_model", "auc_comparator"]
        pooled = metrics.pool_seeds(paired, keys, values, include_seeds=False)
        io.write_csv(pooled, out["mia_paired_pooled"])
