"""results/summary.md: a one-page Markdown summary built only from the tables (kdprivacy.reporting.summary).

Named inputs: ``findings`` (required), ``claims``, ``comparison``, ``mia`` (optional), ``tables`` and
``figures`` (optional lists of paths; each is linked, named by its file stem). Output: ``summary``.
``params.cfg``: ``config_name`` (e.g. the --configfile path); the config is named by its hash too.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.reporting import jobs  # noqa: E402

jobs.summary(runtime.Job(snakemake))  # noqa: F821
