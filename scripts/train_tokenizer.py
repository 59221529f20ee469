"""Snakemake script: byte-level BPE tokenizer trained on non-secret pools (never private/non-member)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.train import jobs  # noqa: E402

jobs.train_tokenizer_job(runtime.Job(snakemake))  # noqa: F821
