"""Every configured attack on one model, then AUC / TPR@FPR with bootstrap CIs (overall and per category).

Named inputs: ``scores`` (target), ``manifest``; optional ``ref_<name>`` (a reference model's score table
-> attack ``ref_<name>``, and an RMIA reference), ``population`` (the target's population table) and
``population_<name>`` (reference ``<name>``'s population table) for ``rmia``, ``mope`` (MoPe table).
Outputs: ``per_example``, ``metrics``; optional ``per_category``, ``roc``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402
from kdprivacy.mia import attacks, metrics  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821
out = dict(snakemake.output.items())  # noqa: F821
names, fprs = cfg["names"], cfg["fprs"]
n_bootstrap, bootstrap_seed, short_tokens = cfg["n_bootstrap"], cfg["bootstrap_seed"], cfg["short_tokens"]

scores = pd.read_parquet(inp["scores"])
manifest = pd.read_parquet(inp["manifest"], columns=["id", "response"])
texts = dict(zip(manifest["id"], manifest["response"]))
references = {k[len("ref_"):]: pd.read_parquet(v) for k, v in inp.items() if k.startswith("ref_")}
populations = {
    k[len("population_"):]: pd.read_parquet(v) for k, v in inp.items() if k.startswith("population_")
}
population = pd.read_parquet(inp["population"]) if "population" in inp else None
mope = pd.read_parquet(inp["mope"]) if "mope" in inp else None
unused = sorted(set(references) - {n[len("ref_"):] for n in names if n.startswith("ref_")})
if unused and "rmia" not in names:
    log.warning("reference table(s) %s given but no attack uses them", unused)
if mope is not None and "mope" not in names:
    log.warning("a MoPe table is given but 'mope' is not among the attacks %s", names)
log.info("attacks %s; references %s; population %s", names, sorted(references),
         "none" if population is None else f"{len(population)} examples")

long = attacks.compute_attacks(
    scores, texts, names, min_k=cfg["min_k"], references=references, population=population,
    reference_populations=populations, mope=mope, rmia=cfg["rmia"], short_tokens=short_tokens,
)
per_example = long.merge(scores[["id", "label", "category", "n_tokens"]], on="id", how="left",
                         validate="many_to_one")
per_example = per_example[["id", "label", "category", "n_tokens", "attack", "score", "short"]]
n_short = int(per_example.loc[per_example.attack == names[0], "short"].sum()) if names else 0
log.info("%d of %d examples are short (< %d scored tokens under a model the attack reads) -- kept, counted",
         n_short, len(scores), short_tokens)
summary = metrics.summarize_attacks(
    per_example, fprs=fprs, n_bootstrap=n_bootstrap, bootstrap_seed=bootstrap_seed
)
log.info("attack metrics:\n%s", summary.to_string(index=False))
io.write_parquet(per_example, out["per_example"])
io.write_csv(summary, out["metrics"])

if "per_category" in out:
    by_category = metrics.summarize_by_category(
        per_example, fprs=fprs, n_bootstrap=n_bootstrap,
        bootstrap_seed=bootstrap_seed,
    )
    io.write_csv(by_category, out["per_category"])
if "roc" in out:
    max_points = cfg["roc_max_points"]
    curves = []
    for name in names:
        part = per_example[per_example.attack == name]
        curves.append(metrics.roc_points(part["score"], part["label"], max_points).assign(attack=name))
    roc = pd.concat(curves, ignore_index=True)[["attack", "fpr", "tpr", "threshold"]]
    io.write_csv(roc, out["roc"], float_format="%.8g")
