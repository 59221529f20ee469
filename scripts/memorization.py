"""Greedy-decode the shared evaluation prompts once; every memorization metric per example (members and
non-members): positional match over the first k tokens, exact extraction, ROUGE-L, secret hits, exposure.

Contract -- input: ``manifest``, ``model``; output: ``per_example`` (parquet, ``id, label, category`` +
:data:`kdprivacy.memorization.extraction.MEMORIZATION_COLUMNS`), optional ``summary`` (csv,
:func:`kdprivacy.memorization.extraction.memorization_summary`). cfg: the config's ``memorization`` section
(less the inheritance thresholds), ``sample_seed`` (also seeds the secret candidates), ``bootstrap_seed``,
``max_length``, ``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io, models, provenance  # noqa: E402
from kdprivacy.memorization import extraction, utility  # noqa: E402
from kdprivacy.mia import scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821

manifest = pd.read_parquet(inp.manifest)
evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
n_members = int((evaluation.label == 1).sum())
log.info("evaluation set: %d members, %d non-members", n_members, len(evaluation) - n_members)

tokenizer = models.load_tokenizer(inp.model)
model = models.load_model(inp.model)
model.to(scoring.inference_device())
table = extraction.memorization_table(
    model, tokenizer, evaluation,
    k=cfg["first_k"],
    batch_size=cfg["batch_size"],
    max_length=cfg["max_length"],
    max_prompt_length=cfg["max_prompt_length"],
    rouge_threshold=cfg["rouge_threshold"],
    n_candidates=cfg["n_candidates"],
    candidate_seed=cfg["sample_seed"],
    max_new_tokens=cfg["max_new_tokens"],
    stemmer=utility.stemmer_from_flag(cfg["rouge_stemmer"]),
    exposure_in_prompt=cfg["exposure_in_prompt"],
)
table = evaluation[["id", "label", "category"]].merge(table, on="id", how="left", validate="one_to_one")
if len(table) != len(evaluation) or table["n_compared"].isna().any():
    raise RuntimeError("memorization lost examples")
summary = extraction.memorization_summary(table, n_bootstrap=cfg["n_bootstrap"], seed=cfg["bootstrap_seed"])
log.info("memorization summary:\n%s", summary.to_string(index=False))
io.write_parquet(table, out.per_example)
if "summary" in out.keys():
    io.write_csv(summary, out.summary)
provenance.write(
    f"{out.per_example}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={"manifest": inp.manifest, "model": inp.model},
    rule=snakemake.rule,  # noqa: F821
)
