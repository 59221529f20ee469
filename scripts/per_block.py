"""Per-block risk: the logit lens, the linear probe and MoPe at every decoder block (``blocks.signals``).

Contract -- inputs: ``manifest``, ``model``; outputs: ``per_block`` (csv,
:data:`kdprivacy.mia.blocks.BLOCK_COLUMNS`), ``spread`` (csv, :data:`kdprivacy.mia.blocks.SPREAD_COLUMNS`),
``per_example`` (parquet, :data:`kdprivacy.mia.blocks.BLOCK_EXAMPLE_COLUMNS`). cfg: the config's ``blocks``
section (``signals``, ``probe``, MoPe's ``k``, ``sigmas``, ``seed``), ``min_k``/``min_k_count`` (the
attacks'), ``population`` (``evaluation.population``: the probe's optional extra negatives), ``sample_seed``
(the other rules' evaluation seed, so the same examples are scored), ``bootstrap_seed``, ``precision``
(``evaluation.precision``), ``score_eos``, ``max_length``, ``max_prompt_length``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.per_block(runtime.Job(snakemake))  # noqa: F821
