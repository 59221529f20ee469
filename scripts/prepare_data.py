"""Load the configured data source, deduplicate, split into disjoint pools; write manifest + data card."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402
from kdprivacy.config import Data  # noqa: E402
from kdprivacy.data import manifest  # noqa: E402

job = runtime.Job(snakemake, Data)  # noqa: F821
pools, card = manifest.prepare(job.cfg, downloads=job.optional_input("hub"))
job.save(manifest=pools, card=card)
job.write_provenance(job.output.provenance)
