"""Score one model on the shared member/non-member evaluation set: per-token statistics, one forward pass."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import encoding, io, models, provenance, scoring  # noqa: E402

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
scores = scoring.score_examples(model, items, batch_size=cfg["batch_size"], pad_id=tokenizer.pad_token_id)

table = evaluation[["id", "label", "category"]].merge(scores, on="id", how="left", validate="one_to_one")
if len(table) != len(evaluation) or table["n_tokens"].isna().any():
    raise RuntimeError("scoring lost examples")
log.info("scored %d examples, %d response tokens", len(table), int(table.n_tokens.sum()))
io.write_parquet(table, out.scores)
provenance.write(
    f"{out.scores}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={"manifest": inp.manifest, "model": inp.model},
    rule=snakemake.rule,  # noqa: F821
)
