# Memorization (the paper's metric): greedy decoding from the prompt, first k response tokens matched.


rule memorization:
    input:
        manifest=rules.prepare_data.output.manifest,
        model=f"{R}/{{family}}/seed{{seed}}/models/{{model}}",
    output:
        per_example=f"{R}/{{family}}/seed{{seed}}/memorization/{{model}}.parquet",
    log:
        f"{R}/logs/memorization/{{family}}/seed{{seed}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/memorization/{{family}}/seed{{seed}}/{{model}}.tsv"
    conda:
        ENV
    threads: 4
    params:
        cfg=memorization_cfg,
        code=code("memorization.py", "memorization", "models"),
    script:
        "../scripts/memorization.py"
