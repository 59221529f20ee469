# Memorization (one greedy pass per model: the paper's positional match, exact and approximate
# extraction, secrets and canary exposure), teacher-to-student inheritance, utility, per-block risk (the
# logit lens and a linear probe at every block from one pass, and MoPe per block).


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


rule per_block:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        per_block=f"{R}/{{family}}/seed{{seed}}/blocks/{{model}}.csv",
        spread=f"{R}/{{family}}/seed{{seed}}/blocks/{{model}}.spread.csv",
        per_example=f"{R}/{{family}}/seed{{seed}}/blocks/{{model}}.examples.parquet",
    log:
        f"{R}/logs/per_block/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/per_block/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: CFG.resources.threads
    resources:
        mem_mb=mem_mb("per_block"),
        runtime=runtime("per_block"),
        gpu=gpus("per_block"),
    params:
        cfg=blocks_cfg,
        code=code(
            "per_block.py",
            "mia.jobs",
            "mia.blocks",
            "mia.probes",
            "mia.perturb",
            "mia.scoring",
            "mia.attacks",
            "models",
        ),
    script:
        "../scripts/per_block.py"
