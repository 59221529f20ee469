"""results/summary.md: a one-page Markdown summary built only from the tables (kdprivacy.reporting.summary).

Named inputs: ``findings`` (required), ``claims``, ``comparison``, ``mia`` (optional), ``tables`` and
``figures`` (optional lists of paths; each is linked, named by its file stem). Output: ``summary``.
``params.cfg``: ``config_name`` (e.g. the --configfile path); the config is named by its hash too.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import pandas as pd  # noqa: E402

from kdprivacy import io  # noqa: E402
from kdprivacy.reporting import summary  # noqa: E402

inp = dict(snakemake.input.items())  # noqa: F821
output = snakemake.output.summary  # noqa: F821


def table(name):
    return pd.read_csv(inp[name]) if name in inp else None


def as_list(value):
    return [] if value is None else [value] if isinstance(value, str) else list(value)


tables = {name: inp[name] for name in ("findings", "claims", "comparison") if name in inp}
for path in as_list(inp.get("tables")):
    tables.setdefault(Path(path).stem, path)
figures = {Path(p).stem: p for p in as_list(inp.get("figures"))}
text = summary.render_summary(
    output,
    table("findings"),
    tables,
    figures,
    config_name=snakemake.params.cfg["config_name"],  # noqa: F821
    config_hash=summary.config_digest(snakemake.config),  # noqa: F821
    claims=table("claims"),
    comparison=table("comparison"),
    mia=table("mia"),
)
io.write_text(output, text)
log.info("summary: %d tables, %d figures linked", len(tables), len(figures))
