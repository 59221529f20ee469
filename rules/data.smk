# Hub downloads (where the network is) and data: load the source, deduplicate, split into disjoint pools, write the manifest every step reads.


# the wildcards every stage shares (names from rules/common.smk)
wildcard_constraints:
    family=alternatives(FAMILIES),
    ref="pretrained|external",
    seed=r"\d+",
    shadow=r"\d+",
    base=alternatives({b for f in FAMILIES.values() for b in f.bases}),
    model=alternatives({"teacher"} | {s for students in STUDENTS.values() for s in students}),
    student=alternatives({s for students in STUDENTS.values() for s in students}),


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
