"""Fetch every hub model and dataset of the config into the Hugging Face cache; record the resolved commits.

A local rule: it runs where Snakemake runs (the node with network); every other job then reads the cache
offline. Output ``downloads``: JSON list of {repo_id, repo_type, revision, commit, path}.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import hub, io, runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821
cfg = snakemake.params.cfg  # noqa: F821
unpinned = [e["repo_id"] for e in cfg["entries"] if not e["revision"]]
if unpinned:
    log.warning("no pinned revision for %s: the commit they resolve to now is recorded, but may change", unpinned)
io.write_json(snakemake.output.downloads, hub.download(cfg["entries"]))  # noqa: F821
