"""Snakemake script: online LiRA of one target against its first 4, 6, ... shadows (the shadow-count curve).

Inputs as ``attack_metrics``'s shadow inputs (``scores``, ``shadow_assignment``, ``shadow_<j>``); output
``curve`` (one metric row per shadow count).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.shadow_curve(runtime.Job(snakemake))  # noqa: F821
