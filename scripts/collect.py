"""Stack per-model tables into one tidy table, the model's key columns (family, seed, model, ...) in front.

Inputs: one csv per model, aligned index by index with ``params.models``. Output: ``table``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting import tables  # noqa: E402

models = list(snakemake.params.models)  # noqa: F821
table = tables.collect(list(snakemake.input), models)  # noqa: F821
io.write_csv(table, snakemake.output.table)  # noqa: F821
log.info("%s: %d rows from %d models", snakemake.output.table, len(table), len(models))  # noqa: F821
