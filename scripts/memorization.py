"""Greedy-decode the shared evaluation prompts once; every memorization metric per example (members and
non-members): positional match over the first k tokens, exact extraction, ROUGE-L, secret hits, exposure.

Contract -- input: ``manifest``, ``model``; output: ``per_example`` (parquet, ``id, label, category`` +
:data:`kdprivacy.memorization.extraction.MEMORIZATION_COLUMNS`), optional ``summary`` (csv,
:func:`kdprivacy.memorization.extraction.memorization_summary`). cfg: the config's ``memorization`` section
(less the inheritance thresholds), ``sample_seed`` (also seeds the secret candidates), ``bootstrap_seed``,
``max_length``, ``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.memorization import jobs  # noqa: E402

jobs.memorization(runtime.Job(snakemake))  # noqa: F821
