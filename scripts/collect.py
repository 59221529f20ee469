"""Stack per-model tables into one tidy table, the model's key columns (family, seed, model, ...) in front.

Inputs: one csv per model, aligned index by index with ``params.models``. Output: ``table``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402

models = list(snakemake.params.models)  # noqa: F821
paths = list(snakemake.input)  # noqa: F821
if len(paths) != len(models):
    raise ValueError(f"{len(paths)} tables for {len(models)} models: they must align index by index")
frames = []
for spec, path in zip(models, paths):
    frame = pd.read_csv(path)
    frame = frame.drop(columns=[c for c in spec if c in frame.columns])
    for column in reversed(list(spec)):
        frame.insert(0, column, spec[column])
    frames.append(frame)
table = pd.concat(frames, ignore_index=True)
io.write_csv(table, snakemake.output.table)  # noqa: F821
log.info("%s: %d rows from %d models", snakemake.output.table, len(table), len(models))  # noqa: F821
