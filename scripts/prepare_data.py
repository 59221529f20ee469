"""Load the configured data source, deduplicate, split into disjoint pools; write manifest + data card."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821 - injected by Snakemake

from kdprivacy import data, hub, io, provenance, runtime  # noqa: E402

log = runtime.start(snakemake)  # noqa: F821
cfg = snakemake.params.cfg  # noqa: F821
inputs = dict(snakemake.input.items())  # noqa: F821
source = cfg
if "hub" in inputs:  # read the snapshot download_hub fetched, offline
    entry = hub.snapshot_of(io.read_json(inputs["hub"]), cfg["hub"]["name"], "dataset")
    log.info("hub dataset %s at commit %s from %s", entry["repo_id"], entry["commit"], entry["path"])
    source = {**cfg, "hub": {**cfg["hub"], "snapshot": entry["path"]}}
raw = data.load_source(source)
log.info("loaded %d records from source %r", len(raw), cfg["source"])
manifest = data.build_manifest(raw, cfg["split"], seed=cfg["split"]["seed"])
log.info("dropped %d exact duplicates", manifest.attrs.get("n_duplicates_dropped", 0))
card = data.data_card(manifest)
log.info("pools:\n%s", card[card.category == "ALL"].to_string(index=False))
io.write_parquet(manifest, snakemake.output.manifest)  # noqa: F821
io.write_csv(card, snakemake.output.card)  # noqa: F821
provenance.write(
    snakemake.output.provenance,  # noqa: F821
    params={"cfg": cfg, "code": snakemake.params.code},  # noqa: F821
    inputs=inputs,
    rule=snakemake.rule,  # noqa: F821
)
