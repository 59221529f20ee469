"""Blind baseline: a bag-of-words classifier that never queries a model, scored out-of-fold.

Named input: ``manifest``. Outputs: ``scores`` (``id, label, category, fold, attack, score``), ``metrics``
(one row, attack ``blind``, plus per-fold AUCs); optional ``per_category``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.blind_baseline(runtime.Job(snakemake))  # noqa: F821
