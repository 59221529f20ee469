"""Per-block risk: MoPe with seeded noise on one decoder block at a time; one AUC per block (and sigma).

Contract -- inputs: ``manifest``, ``model``; outputs: ``per_block`` (csv,
:data:`kdprivacy.mia.blocks.BLOCK_COLUMNS`), optional ``per_example`` (parquet,
:data:`kdprivacy.mia.blocks.BLOCK_EXAMPLE_COLUMNS`). cfg: the config's ``blocks`` section (a list of
``sigmas`` = a sweep, one row per block per sigma), ``sample_seed`` (the other rules' evaluation seed, so
the same examples are scored), ``bootstrap_seed``, ``precision`` (``evaluation.precision``),
``max_length``, ``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import encoding, io, models, provenance  # noqa: E402
from kdprivacy.mia import blocks, scoring  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp, out = snakemake.input, snakemake.output  # noqa: F821

manifest = pd.read_parquet(inp.manifest)
evaluation = scoring.evaluation_set(manifest, cfg["max_members"], cfg["max_nonmembers"], cfg["sample_seed"])
n_members = int((evaluation.label == 1).sum())
log.info("evaluation set: %d members, %d non-members", n_members, len(evaluation) - n_members)

tokenizer = models.load_tokenizer(inp.model)
model = models.load_model(inp.model)
model.to(scoring.inference_device())
items = encoding.encode_frame(tokenizer, evaluation, cfg["max_length"], cfg["max_prompt_length"])
per_block, per_example = blocks.block_mope(
    model, items, evaluation["label"].to_numpy(),
    k=cfg["k"],
    sigmas=cfg["sigmas"],
    seed=cfg["seed"],
    batch_size=cfg["batch_size"],
    pad_id=tokenizer.pad_token_id,
    n_bootstrap=cfg["n_bootstrap"],
    bootstrap_seed=cfg["bootstrap_seed"],
    precision=cfg["precision"],
)
log.info("per-block MoPe:\n%s", per_block.to_string(index=False))
io.write_csv(per_block, out.per_block)
if "per_example" in out.keys():
    io.write_parquet(per_example, out.per_example)
provenance.write(
    f"{out.per_block}.provenance.json",
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs={"manifest": inp.manifest, "model": inp.model},
    rule=snakemake.rule,  # noqa: F821
)
