"""This run beside the paper (kdprivacy.reporting.paper): matched cells and the paper's qualitative claims.

Named inputs: ``mia`` (required), ``memorization``, ``utility`` (optional), ``findings`` (required: the
findings table). Outputs: ``comparison`` (ours, paper, diff per mapped cell; header only when nothing is
mapped), ``claims`` (the paper's qualitative claims, supported True/False/None). ``params.cfg``: ``paper``
(the mapping of our families and bases onto the paper's, see kdprivacy.reporting.paper.compare).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting import paper  # noqa: E402

cfg = snakemake.params.cfg  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821


def table(name):
    return pd.read_csv(inp[name]) if name in inp else None


comparison = paper.compare(cfg["paper"], table("mia"), table("memorization"), table("utility"))
io.write_csv(comparison, snakemake.output.comparison)  # noqa: F821
log.info("%d of our cells matched a cell of the paper", len(comparison))
claims = paper.qualitative_claims(table("findings"))
io.write_csv(claims, snakemake.output.claims)  # noqa: F821
for r in claims.itertuples(index=False):
    log.info("%s: %s", r.claim, r.supported)
