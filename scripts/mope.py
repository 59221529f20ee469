"""MoPe scores of one model on the shared evaluation set: K seeded in-place weight perturbations.

Named inputs: ``manifest``, ``model``. Output: ``mope`` (``id, label, category, n_tokens, nll, mope``).
``cfg["block"]`` (int) restricts the noise to one decoder block (per-block risk); null = all weights.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import encoding, io, models, provenance  # noqa: E402
from kdprivacy.mia import perturb, scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821

manifest = pd.read_parquet(inp.manifest)
evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
tokenizer = models.load_tokenizer(inp.model)
model = models.load_model(inp.model)
model.to(scoring.inference_device())
block = cfg["block"]
params = None if block is None else perturb.block_params(model, int(block))
if params is not None:
    log.info("perturbing block %s only (%d tensors)", perturb.find_blocks(model)[int(block)][0], len(params))
items = encoding.encode_frame(tokenizer, evaluation, cfg["max_length"], cfg["max_prompt_length"])
log.info("MoPe: %d examples, K=%d, sigma=%g, seed=%d", len(items), cfg["k"], cfg["sigma"], cfg["seed"])
table = perturb.mope_scores(
    model, items, k=int(cfg["k"]), sigma=float(cfg["sigma"]), seed=int(cfg["seed"]),
    batch_size=int(cfg["batch_size"]), pad_id=tokenizer.pad_token_id, params=params,
    precision=cfg["precision"],
)
table = evaluation[["id", "label", "category"]].merge(table, on="id", how="left", validate="one_to_one")
if len(table) != len(evaluation) or table["mope"].isna().any():
    raise RuntimeError("MoPe lost examples or produced NaN scores (examples without scored tokens?)")
io.write_parquet(table, out.mope)
provenance.write(
    f"{out.mope}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={"manifest": inp.manifest, "model": inp.model},
    rule=snakemake.rule,  # noqa: F821
)
