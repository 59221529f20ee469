"""Per-block risk: MoPe with seeded noise on one decoder block at a time; one AUC per block (and sigma).

Contract -- inputs: ``manifest``, ``model``; outputs: ``per_block`` (csv,
:data:`kdprivacy.mia.blocks.BLOCK_COLUMNS`), optional ``per_example`` (parquet,
:data:`kdprivacy.mia.blocks.BLOCK_EXAMPLE_COLUMNS`). cfg: the config's ``blocks`` section (a list of
``sigmas`` = a sweep, one row per block per sigma), ``sample_seed`` (the other rules' evaluation seed, so
the same examples are scored), ``bootstrap_seed``, ``precision`` (``evaluation.precision``),
``max_length``, ``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.block_mope(runtime.Job(snakemake))  # noqa: F821
