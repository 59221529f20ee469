"""Snakemake script: see ``kdprivacy.mia.jobs.shadow_assignment`` (attacks.shadows).

Input ``manifest`` (the target's); output ``assignment`` (``example_id, shadow, in``: who is IN which shadow).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.mia import jobs  # noqa: E402

jobs.shadow_assignment(runtime.Job(snakemake))  # noqa: F821
