"""Heatmap of raw ROC AUC: model ("family/model", mean over training seeds) x attack, and its grid as a table
(kdprivacy.reporting.plots.mia.mia_auc_heatmap). ``params.cfg``: ``attacks`` (column order)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting.plots import mia  # noqa: E402

grid = mia.mia_auc_heatmap(
    pd.read_csv(snakemake.input.mia), snakemake.output.figure, snakemake.params.cfg["attacks"]  # noqa: F821
)
io.write_csv(grid, snakemake.output.table)  # noqa: F821
