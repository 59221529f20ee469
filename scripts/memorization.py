"""Greedy-decode the shared evaluation prompts and match the first k tokens with the true responses."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import encoding, io, memorization, models, provenance, scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821

manifest = pd.read_parquet(inp.manifest)
evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
n_members = int((evaluation.label == 1).sum())
log.info("evaluation set: %d members, %d non-members", n_members, len(evaluation) - n_members)

tokenizer = models.load_tokenizer(inp.model)
model = models.load_model(inp.model, dtype=cfg.get("dtype", "float32"))
model.to(scoring.inference_device())
items = encoding.encode_frame(tokenizer, evaluation, cfg["max_length"], cfg["max_prompt_length"])
table = memorization.memorization_table(
    model, items, k=cfg["first_k"], batch_size=cfg["batch_size"], pad_id=tokenizer.pad_token_id,
    eos_id=tokenizer.eos_token_id,
)
table = evaluation[["id", "label", "category"]].merge(table, on="id", how="left", validate="one_to_one")
if len(table) != len(evaluation) or table["n_compared"].isna().any():
    raise RuntimeError("memorization lost examples")
log.info("memorization summary: %s", memorization.summarize_memorization(table))
io.write_parquet(table, out.per_example)
provenance.write(
    f"{out.per_example}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={"manifest": inp.manifest, "model": inp.model},
    rule=snakemake.rule,  # noqa: F821
)
