"""Utility: ROUGE-L (F x 100) of greedy responses to held-out dev prompts against the dev references.

Contract -- inputs: ``manifest``, ``model``; outputs: ``per_example`` (parquet,
:data:`kdprivacy.memorization.utility.UTILITY_COLUMNS`), ``summary`` (csv,
:data:`kdprivacy.memorization.utility.UTILITY_SUMMARY_COLUMNS`, one row per category and ``ALL``). cfg: the
config's ``utility`` section, ``sample_seed``, ``n_bootstrap``, ``bootstrap_seed``, ``max_length``,
``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io, models, provenance  # noqa: E402
from kdprivacy.memorization import utility  # noqa: E402
from kdprivacy.mia import scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821

manifest = pd.read_parquet(inp.manifest)
dev = utility.dev_set(manifest, cfg["max_examples"], cfg["sample_seed"])
log.info("utility on %d dev examples", len(dev))

tokenizer = models.load_tokenizer(inp.model)
model = models.load_model(inp.model)
model.to(scoring.inference_device())
table = utility.utility_table(
    model, tokenizer, dev,
    batch_size=cfg["batch_size"],
    max_length=cfg["max_length"],
    max_prompt_length=cfg["max_prompt_length"],
    max_new_tokens=cfg["max_new_tokens"],
    stemmer=utility.stemmer_from_flag(cfg["rouge_stemmer"]),
)
if len(table) != len(dev):
    raise RuntimeError("utility lost examples")
summary = utility.summarize_utility(table, n_bootstrap=cfg["n_bootstrap"], seed=cfg["bootstrap_seed"])
log.info("utility (ROUGE-L x 100):\n%s", summary.to_string(index=False))
io.write_parquet(table, out.per_example)
io.write_csv(summary, out.summary)
provenance.write(
    f"{out.per_example}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={"manifest": inp.manifest, "model": inp.model},
    rule=snakemake.rule,  # noqa: F821
)
