"""Blind baseline: a bag-of-words classifier that never queries a model, scored out-of-fold.

Named input: ``manifest``. Outputs: ``scores`` (``id, label, category, fold, attack, score``), ``metrics``
(one row, attack ``blind``, plus per-fold AUCs); optional ``per_category``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io, provenance  # noqa: E402
from kdprivacy.mia import blind, metrics, scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821
out = dict(snakemake.output.items())  # noqa: F821
fprs, n_bootstrap, bootstrap_seed = cfg["fprs"], cfg["n_bootstrap"], cfg["bootstrap_seed"]

manifest = pd.read_parquet(inp["manifest"])
evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
scores = blind.blind_scores(
    evaluation, folds=cfg["folds"], seed=cfg["seed"], features=cfg["features"], ngram_max=cfg["ngram_max"],
    c=cfg["C"],
)
per_example = scores.merge(evaluation[["id", "category"]], on="id", how="left", validate="one_to_one")
per_example = per_example.assign(attack="blind")[["id", "label", "category", "fold", "attack", "score"]]
summary = metrics.summarize_attacks(
    per_example, fprs=fprs, n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed
)
folds = blind.fold_aucs(scores)
summary["fold_auc_mean"] = folds.mean()
summary["fold_auc_min"] = folds.min()
summary["fold_auc_max"] = folds.max()
log.info("blind baseline (never queries a model):\n%s\nper-fold AUC: %s", summary.to_string(index=False),
         ", ".join(f"{a:.3f}" for a in folds))
io.write_parquet(per_example, out["scores"])
io.write_csv(summary, out["metrics"])
if "per_category" in out:
    io.write_csv(metrics.summarize_by_category(per_example, fprs=fprs, n_bootstrap=n_bootstrap,
                                               bootstrap_seed=bootstrap_seed), out["per_category"])
code = snakemake.params.code  # noqa: F821
rule = snakemake.rule  # noqa: F821
provenance.write(f"{out['metrics']}.provenance.json", params={"cfg": cfg, "code": code},
                 inputs={"manifest": inp["manifest"]}, rule=rule)
