"""Tidy cross-model tables (kdprivacy.reporting.tables.aggregate): MIA metrics, per category, paired
differences and seed-pooled versions, memorization per model.

Named inputs (lists aligned index by index with ``params.models``): ``metrics``, ``memorization``; optional
``per_category``, ``per_example``. Outputs: ``mia``, ``memorization``; optional ``mia_pooled``,
``mia_category`` (needs ``per_category``), ``mia_paired`` and ``mia_paired_pooled`` (need ``per_example``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting import tables  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
out = dict(snakemake.output.items())  # noqa: F821
built = tables.aggregate(
    snakemake.params.models,  # noqa: F821
    dict(snakemake.input.items()),  # noqa: F821
    out,
    n_bootstrap=int(cfg["n_bootstrap"]),
    bootstrap_seed=int(cfg["bootstrap_seed"]),
)
for name, table in built.items():
    io.write_csv(table, out[name])
