"""Snakemake script: No-KD or word-level KD student, trained on the public pool only (asserted)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io, provenance, training  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
code = snakemake.params.code  # noqa: F821
runtime.seed_everything(cfg["seed"])
# Base and teacher are loaded from cfg; local dirs are also named inputs so the DAG orders them.
model, tokenizer, history = training.train_student_from_cfg(cfg, snakemake.input.manifest, log)  # noqa: F821
with io.atomic_dir(snakemake.output.dir) as tmp:  # noqa: F821
    training.save_trained(tmp, model, tokenizer, history)
    provenance.write(
        tmp / "provenance.json",
        params={"cfg": cfg, "code": code},
        inputs=dict(snakemake.input.items()),  # noqa: F821
        rule=snakemake.rule,  # noqa: F821
    )
