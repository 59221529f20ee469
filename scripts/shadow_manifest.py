"""Snakemake script: see ``kdprivacy.mia.jobs.shadow_manifest`` (attacks.shadows).

Input ``manifest`` (the target's); output ``manifest`` (the shadow's: its IN candidates as the private pool).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.shadow_manifest(runtime.Job(snakemake))  # noqa: F821
