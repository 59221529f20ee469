# Hub downloads (where the network is) and data: load the source, deduplicate, split into disjoint pools, write the manifest every step reads.


def prepare_data_inputs(wildcards):
    """The data file (source file) or the hub download manifest (source hub); synthetic data has none."""
    if CFG.data.source == "file":
        return {"data": os.path.normpath(os.path.expanduser(CFG.data.file.path))}
    return {"hub": DOWNLOADS} if hub.dataset_entries(CFG) else {}


def hub_cfg():
    return {"entries": HUB_ENTRIES}


def data_source_cfg():
    """Only what decides the manifest: the active source and the split (not sequence lengths)."""
    data = dump(CFG.data)
    return {"source": data["source"], data["source"]: data[data["source"]], "split": data["split"]}


rule download_hub:
    output:
        downloads=DOWNLOADS,
    log:
        f"{R}/logs/download_hub.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=hub_cfg(),
        code=code("download_hub.py", "hub"),
    script:
        "../scripts/download_hub.py"


rule prepare_data:
    input:
        unpack(prepare_data_inputs),
    output:
        manifest=f"{R}/data/manifest.parquet",
        card=f"{R}/tables/data_card.csv",
        provenance=f"{R}/data/manifest.provenance.json",
    log:
        f"{R}/logs/prepare_data.log",
    conda:
        ENV
    params:
        sources=sources(prepare_data_inputs),
        cfg=data_source_cfg(),
        code=code("prepare_data.py", "data.manifest"),
    script:
        "../scripts/prepare_data.py"
