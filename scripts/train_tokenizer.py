"""Snakemake script: byte-level BPE tokenizer trained on non-secret pools (never private/non-member)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake
from kdprivacy import runtime

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io, provenance  # noqa: E402
from kdprivacy.config import TokenizerTrain  # noqa: E402
from kdprivacy.train import jobs  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
code = snakemake.params.code  # noqa: F821
tokenizer = jobs.train_tokenizer_from_cfg(TokenizerTrain.model_validate(cfg), snakemake.input.manifest)  # noqa: F821
log.info("tokenizer: %d tokens from pools %s", len(tokenizer), cfg["pools"])
with io.atomic_dir(snakemake.output.dir) as tmp:  # noqa: F821
    tokenizer.save_pretrained(tmp)
    provenance.write(
        tmp / "provenance.json",
        params={"cfg": cfg, "code": code},
        inputs=dict(snakemake.input.items()),  # noqa: F821
        rule=snakemake.rule,  # noqa: F821
    )
