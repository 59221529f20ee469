"""Teacher -> student inheritance of memorization, and membership vs memorization per sample.

Contract -- inputs: ``teacher`` and ``student`` (per-example memorization parquets of
``scripts/memorization.py``, same evaluation set), ``student_attacks`` (per-example attack parquet of
``scripts/attack_metrics.py``: ``id, label, category, attack, score``), optional ``teacher_attacks`` (same,
for the teacher); outputs: ``inheritance`` (csv, :data:`kdprivacy.memorization.inheritance.INHERITANCE_COLUMNS`),
``correlation`` (csv, ``model`` + :data:`kdprivacy.memorization.inheritance.CORRELATION_COLUMNS`; ``model``
is ``student`` or ``teacher``). cfg: ``thresholds`` (``memorization.inheritance_thresholds``),
``n_bootstrap``, ``bootstrap_seed``; the metrics are the library's defaults.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.memorization import jobs  # noqa: E402

jobs.inheritance(runtime.Job(snakemake))  # noqa: F821
