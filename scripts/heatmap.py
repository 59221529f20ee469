"""Heatmap of raw ROC AUC: model ("family/model", mean over training seeds) x attack, and its grid as a table
(kdprivacy.reporting.plots.mia.mia_auc_heatmap). ``params.cfg``: ``attacks`` (column order)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.reporting.plots import mia  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821
job.save(table=mia.mia_auc_heatmap(job.optional_table("mia"), job.output.figure, job.cfg["attacks"]))
