"""Every configured attack on one model, then AUC / TPR@FPR with bootstrap CIs (overall and per category).

Named inputs: ``scores`` (target), ``manifest``; optional ``ref_<name>`` (a reference model's score table
-> attack ``ref_<name>``, and an RMIA reference), ``population`` (the target's population table) and
``population_<name>`` (reference ``<name>``'s population table) for ``rmia``, ``mope`` (MoPe table).
Outputs: ``per_example``, ``metrics``; optional ``per_category``, ``roc``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.attack_metrics(runtime.Job(snakemake))  # noqa: F821
