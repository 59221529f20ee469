"""Fetch every hub model and dataset of the config into the Hugging Face cache; record the resolved commits.

A local rule: it runs where Snakemake runs (the node with network); every other job then reads the cache
offline. Output ``downloads``: JSON list of {repo_id, repo_type, revision, commit, path}.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import hub, runtime  # noqa: E402

job = runtime.Job(snakemake)  # noqa: F821
job.save(downloads=hub.download(job.cfg["entries"]))
