# Data: load the source, deduplicate, split into disjoint pools, write the manifest every step reads.


rule prepare_data:
    output:
        manifest=f"{R}/data/manifest.parquet",
        card=f"{R}/tables/data_card.csv",
        provenance=f"{R}/data/manifest.provenance.json",
    log:
        f"{R}/logs/prepare_data.log",
    conda:
        ENV
    params:
        cfg=data_source_cfg(),
        code=code("prepare_data.py", "data"),
    script:
        "../scripts/prepare_data.py"
