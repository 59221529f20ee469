"""This run beside the paper (kdprivacy.reporting.paper): matched cells and the paper's qualitative claims.

Named inputs: ``mia`` (required), ``memorization``, ``utility`` (optional), ``findings`` (required: the
findings table). Outputs: ``comparison`` (ours, paper, diff per mapped cell; header only when nothing is
mapped), ``claims`` (the paper's qualitative claims, supported True/False/None). ``params.cfg``: ``paper``
(the mapping of our families and bases onto the paper's, see kdprivacy.reporting.paper.compare).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.reporting import jobs  # noqa: E402

jobs.paper_comparison(runtime.Job(snakemake))  # noqa: F821
