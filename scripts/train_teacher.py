"""Snakemake script: fine-tune the teacher on the private pool (the members); dev pool for dev loss."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io, provenance, training  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
code = snakemake.params.code  # noqa: F821
runtime.seed_everything(cfg["seed"])
# The base is always loaded from cfg["base"]; a local base dir is also a named input so the DAG orders it.
model, tokenizer, history = training.train_teacher_from_cfg(cfg, snakemake.input.manifest, log)  # noqa: F821
with io.atomic_dir(snakemake.output.dir) as tmp:  # noqa: F821
    training.save_trained(tmp, model, tokenizer, history)
    provenance.write(
        tmp / "provenance.json",
        params={"cfg": cfg, "code": code},
        inputs=dict(snakemake.input.items()),  # noqa: F821
        rule=snakemake.rule,  # noqa: F821
    )
