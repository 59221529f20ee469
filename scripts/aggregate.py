"""Tidy cross-model tables (kdprivacy.reporting.tables.aggregate): MIA metrics, per category, paired
differences and seed-pooled versions, memorization per model.

Named inputs (lists aligned index by index with ``params.models``): ``metrics``, ``memorization``; optional
``per_category``, ``per_example``. Outputs: ``mia``, ``memorization``; optional ``mia_pooled``,
``mia_category`` (needs ``per_category``), ``mia_paired``, ``mia_paired_pooled``, ``mia_split`` and
``mia_best_attack`` (need ``per_example``). ``params.cfg``: ``n_bootstrap``, ``bootstrap_seed``,
``best_attack_split_seed`` (the held-out best attack's halves, kdprivacy.reporting.best_attack).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.reporting import tables  # noqa: E402
from kdprivacy.stats import Bootstrap  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821
job.save(**tables.aggregate(
    job.snakemake.params.models, job.inputs, job.outputs,
    bootstrap=Bootstrap.from_cfg(job.cfg),
    split_seed=int(job.cfg["best_attack_split_seed"]),
))
