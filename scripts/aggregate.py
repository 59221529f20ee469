"""Tidy cross-model tables: MIA metrics per (model, attack) and memorization per model."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io, memorization  # noqa: E402

MODEL_COLUMNS = ["family", "seed", "model", "role", "method", "base"]

models = list(snakemake.params.models)  # noqa: F821
metric_paths = list(snakemake.input.metrics)  # noqa: F821
memorization_paths = list(snakemake.input.memorization)  # noqa: F821
if not len(models) == len(metric_paths) == len(memorization_paths):
    raise ValueError(
        f"models ({len(models)}), metrics ({len(metric_paths)}) and memorization ({len(memorization_paths)}) "
        "must align index by index"
    )

mia_frames, memorization_rows = [], []
for spec, metrics_path, memorization_path in zip(models, metric_paths, memorization_paths):
    key = {column: spec[column] for column in MODEL_COLUMNS}
    metrics = pd.read_csv(metrics_path)
    for column in reversed(MODEL_COLUMNS):
        metrics.insert(0, column, key[column])
    mia_frames.append(metrics)
    summary = memorization.summarize_memorization(pd.read_parquet(memorization_path))
    memorization_rows.append({**key, **summary})

mia = pd.concat(mia_frames, ignore_index=True)
memorization_table = pd.DataFrame(memorization_rows)
log.info("MIA table: %d rows; memorization table: %d rows", len(mia), len(memorization_table))
io.write_csv(mia, snakemake.output.mia)  # noqa: F821
io.write_csv(memorization_table, snakemake.output.memorization)  # noqa: F821
