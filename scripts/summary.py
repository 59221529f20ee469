"""results/summary.md: a one-page Markdown summary built only from the tables (kdprivacy.findings).

Named inputs: ``findings`` (required), ``claims``, ``comparison``, ``mia`` (optional), ``tables`` and
``figures`` (optional lists of paths; each is linked, named by its file stem). Output: ``summary``.
``params.cfg``: ``config_name`` (e.g. the --configfile path), ``config_hash`` (default: sha256 of the
loaded config, first 12 hex digits), ``provenance`` (optional list of paths to link).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821

import hashlib  # noqa: E402
import json  # noqa: E402

import pandas as pd  # noqa: E402

from kdprivacy import findings, io  # noqa: E402

cfg = dict(snakemake.params.cfg or {})  # noqa: F821
inp = dict(snakemake.input.items())  # noqa: F821
output = snakemake.output.summary  # noqa: F821


def table(name):
    return pd.read_csv(inp[name]) if name in inp else None


def as_list(value):
    return [] if value is None else [value] if isinstance(value, str) else list(value)


tables = {}
for name in ("findings", "claims", "comparison"):
    if name in inp:
        tables[name] = inp[name]
for path in as_list(inp.get("tables")):
    tables.setdefault(Path(path).stem, path)
figures = {Path(p).stem: p for p in as_list(inp.get("figures"))}
config_hash = (
    cfg.get("config_hash")
    or hashlib.sha256(
        json.dumps(dict(snakemake.config), sort_keys=True, default=str).encode()  # noqa: F821
    ).hexdigest()[:12]
)
text = findings.render_summary(
    output,
    table("findings"),
    tables,
    figures,
    config_name=str(cfg.get("config_name") or "config.yaml"),
    config_hash=config_hash,
    claims=table("claims"),
    comparison=table("comparison"),
    mia=table("mia"),
    provenance=as_list(cfg.get("provenance")),
)
io.write_text(output, text)
log.info("summary: %d tables, %d figures linked", len(tables), len(figures))
