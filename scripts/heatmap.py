"""Heatmap of raw ROC AUC: model ("family/model", mean over training seeds) x attack."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io, plots  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
mia = pd.read_csv(snakemake.input.mia)  # noqa: F821
table = plots.auc_by_model(mia)
present = list(dict.fromkeys(table["attack"]))
configured = list(cfg.get("attacks", []))
attack_order = [a for a in configured if a in present] + [a for a in present if a not in configured]
seed_counts = sorted(set(table["n_seeds"])) if len(table) else [1]
if seed_counts == [1]:
    seeds = "one seed"
elif len(seed_counts) == 1:
    seeds = f"mean over {seed_counts[0]} seeds"
else:
    seeds = f"mean over {seed_counts[0]}-{seed_counts[-1]} seeds per model"
drawn = plots.heatmap(
    table, row="label", col="attack", value="auc", path=snakemake.output.figure,  # noqa: F821
    title=f"Membership inference ROC AUC ({seeds}; 0.5 = chance)", col_order=attack_order,
    colorbar_label="ROC AUC (raw, not flipped)",
)
pivot = drawn.values.rename_axis(index="model", columns=None).reset_index()
io.write_csv(pivot, snakemake.output.table)  # noqa: F821
log.info("heatmap of %d models x %d attacks", *drawn.values.shape)
