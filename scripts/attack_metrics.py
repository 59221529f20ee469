"""Every configured attack on one model's score table, then AUC / TPR@FPR (with bootstrap CIs) per attack."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import attacks, io, metrics  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821
names = cfg.get("names", cfg.get("attacks"))

scores = pd.read_parquet(inp.scores)
manifest = pd.read_parquet(inp.manifest, columns=["id", "response"])
texts = dict(zip(manifest["id"], manifest["response"]))
long = attacks.compute_attacks(scores, texts, names, min_k=cfg["min_k"])
per_example = long.merge(scores[["id", "label", "category"]], on="id", how="left", validate="many_to_one")
per_example = per_example[["id", "label", "category", "attack", "score"]]
summary = metrics.summarize_attacks(
    per_example,
    fprs=cfg["fprs"],
    n_bootstrap=cfg.get("n_bootstrap", 0),
    bootstrap_seed=cfg.get("bootstrap_seed", 0),
)
log.info("attack metrics:\n%s", summary.to_string(index=False))
io.write_parquet(per_example, out.per_example)
io.write_csv(summary, out.metrics)
