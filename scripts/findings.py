"""The study's claims tested on this run's tables (kdprivacy.reporting.claims.compute_findings).

Named inputs: ``mia`` (required), ``mia_paired``, ``memorization``, ``blind_baseline``, ``mia_category``,
``blocks`` (optional). Output: ``findings`` (CSV). ``params.cfg``: ``attacks`` (preferred order),
``base_sizes`` (``{family: {base: n_params}}``), ``sources`` (the ablations' source students).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting import claims  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821


def table(name):
    return pd.read_csv(inp[name]) if name in inp else None


result = claims.compute_findings(
    table("mia"),
    paired=table("mia_paired"),
    memorization=table("memorization"),
    blind=table("blind_baseline"),
    category=table("mia_category"),
    blocks=table("blocks"),
    sizes=cfg["base_sizes"],
    sources=cfg["sources"],
    attacks=cfg["attacks"],
)
io.write_csv(result, snakemake.output.findings)  # noqa: F821
for r in result[result["level"] == "summary"].itertuples(index=False):
    log.info("%s [%s]: %s", r.claim, r.scope, r.detail)
