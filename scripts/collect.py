"""Stack per-model tables into one tidy table, the model's key columns (family, seed, model, ...) in front.

Inputs: one csv per model, aligned index by index with ``params.models``. Output: ``table``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.reporting import tables  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821
models = list(job.snakemake.params.models)
table = tables.collect(list(job.input), models)
job.save(table=table)
job.log.info("%s: %d rows from %d models", job.output.table, len(table), len(models))
