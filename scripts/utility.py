"""Utility: ROUGE-L (F x 100) of greedy responses to held-out dev prompts against the dev references.

Contract -- inputs: ``manifest``, ``model``; outputs: ``per_example`` (parquet,
:data:`kdprivacy.memorization.utility.UTILITY_COLUMNS`), ``summary`` (csv,
:data:`kdprivacy.memorization.utility.UTILITY_SUMMARY_COLUMNS`, one row per category and ``ALL``). cfg: the
config's ``utility`` section, ``sample_seed``, ``n_bootstrap``, ``bootstrap_seed``, ``max_length``,
``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.memorization import jobs  # noqa: E402

jobs.utility(runtime.Job(snakemake))  # noqa: F821
