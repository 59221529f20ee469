"""The study's claims tested on this run's tables (kdprivacy.reporting.claims.compute_findings).

Named inputs: ``mia`` (required), ``mia_paired``, ``memorization``, ``blind_baseline``, ``mia_category``,
``blocks`` (optional). Output: ``findings`` (CSV). ``params.cfg``: ``attacks`` (preferred order),
``base_sizes`` (``{family: {base: n_params}}``), ``sources`` (the ablations' source students).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.reporting import jobs  # noqa: E402

jobs.findings(runtime.Job(snakemake))  # noqa: F821
