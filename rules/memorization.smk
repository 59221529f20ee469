# Memorization (one greedy pass per model: the paper's positional match, exact and approximate
# extraction, secrets and canary exposure), teacher-to-student inheritance, utility, per-block risk.


rule memorization:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        per_example=f"{R}/{{family}}/seed{{seed}}/memorization/{{model}}.parquet",
        summary=f"{R}/{{family}}/seed{{seed}}/memorization/{{model}}.summary.csv",
    log:
        f"{R}/logs/memorization/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/memorization/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("memorization"),
        runtime=runtime("memorization"),
        gpu=gpus("memorization"),
    params:
        cfg=memorization_cfg,
        code=code("memorization.py", "memorization.jobs", "memorization.extraction", "mia.scoring", "models"),
    script:
        "../scripts/memorization.py"


rule inheritance:
    input:
        unpack(inheritance_inputs),
    output:
        inheritance=f"{R}/{{family}}/seed{{seed}}/inheritance/{{student}}.csv",
        correlation=f"{R}/{{family}}/seed{{seed}}/inheritance/{{student}}.correlation.csv",
    log:
        f"{R}/logs/inheritance/{{family}}/seed{{seed}}/{{student}}.log",
    localrule: True
    conda:
        ENV
    params:
        cfg=inheritance_cfg(),
        code=code("inheritance.py", "memorization.jobs", "memorization.inheritance"),
    script:
        "../scripts/inheritance.py"


rule utility:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        per_example=f"{R}/{{family}}/seed{{seed}}/utility/{{model}}.parquet",
        summary=f"{R}/{{family}}/seed{{seed}}/utility/{{model}}.summary.csv",
    log:
        f"{R}/logs/utility/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/utility/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("utility"),
        runtime=runtime("utility"),
        gpu=gpus("utility"),
    params:
        cfg=utility_cfg,
        code=code("utility.py", "memorization.jobs", "memorization.utility", "mia.scoring", "models"),
    script:
        "../scripts/utility.py"


rule block_mope:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        per_block=f"{R}/{{family}}/seed{{seed}}/blocks/{{model}}.csv",
        spread=f"{R}/{{family}}/seed{{seed}}/blocks/{{model}}.spread.csv",
    log:
        f"{R}/logs/block_mope/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/block_mope/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("block_mope"),
        runtime=runtime("block_mope"),
        gpu=gpus("block_mope"),
    params:
        cfg=blocks_cfg,
        code=code("block_mope.py", "mia.jobs", "mia.blocks", "mia.scoring", "models"),
    script:
        "../scripts/block_mope.py"
