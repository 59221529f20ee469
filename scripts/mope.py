"""MoPe scores of one model on the shared evaluation set: K seeded in-place weight perturbations.

Named inputs: ``manifest``, ``model``. Output: ``mope`` (``id, label, category, n_tokens, nll, mope``).
``cfg["block"]`` (int) restricts the noise to one decoder block (per-block risk); null = all weights.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.mope(runtime.Job(snakemake))  # noqa: F821
